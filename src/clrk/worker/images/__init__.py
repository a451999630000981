"""OCI images: references, the registry client, safe layer unpacking, the digest-keyed store."""
