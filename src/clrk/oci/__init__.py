"""Images on the user's side: the registry `clrk dev` runs, and building, importing and
pushing images without a Docker engine (buildah and skopeo do the work; this package
runs them, keeps their state under clrk's own directories and turns their failures into
one clear line)."""
