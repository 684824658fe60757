"""The storage fixtures (a local folder and a bucket of a moto S3 server, each paired with a
database), for the replica tests here."""

from tests.storage.conftest import aws_credentials, moto_endpoint, store_and_database

__all__ = ["aws_credentials", "moto_endpoint", "store_and_database"]
