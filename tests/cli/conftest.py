"""The storage fixtures (a local folder and a bucket of a moto S3 server), for the registry
commands' tests here."""

from tests.storage.conftest import aws_credentials, moto_endpoint, objects

__all__ = ["aws_credentials", "moto_endpoint", "objects"]
