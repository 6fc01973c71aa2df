"""docker-save / OCI-layout tar streams: parse, verify, filter; never extract."""
