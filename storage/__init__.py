"""Object storage behind one small interface: a local folder now, S3 in production."""
