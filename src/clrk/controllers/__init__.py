"""Reconcile loops over watches: the controller runtime and one module per reconciler."""
