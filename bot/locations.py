"""What a setting's text names: a URL Atlas reads, a local path, or a mistyped URL.

A mistyped URL (`s3:/bucket`, `S3://bucket`, `s3//bucket`, `postgresql:/host/db`) is
refused, never taken for a path: as a path it would quietly put production backups on a
local, perhaps temporary, disk, in a folder named after the text, password and all. Pure:
text in, text out; errors name only the URL's shape, never what follows its scheme.
"""

from __future__ import annotations

import re
from pathlib import Path

# Schemes people write for storage, catalogs and endpoints. With one of these, even a
# missing colon (`s3//bucket`) or slash (`s3:bucket`) is a URL typo, not a folder name.
KNOWN_SCHEMES = frozenset(
    {
        "s3",
        "s3a",
        "s3n",
        "gs",
        "gcs",
        "az",
        "azure",
        "abfs",
        "r2",
        "b2",
        "minio",
        "http",
        "https",
        "file",
        "ftp",
        "sftp",
        "ssh",
        "postgres",
        "postgresql",
        "pgsql",
        "psql",
        "sqlite",
    }
)
# a space before the colon (`s3 ://bucket`) is still a mistyped URL, never a folder name
_SHAPE = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*)\s*(://|:/|:|//)")
_USERINFO = re.compile(r"[^/\s:@]+:[^/\s]*@")  # KEY:SECRET@bucket, with no scheme
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def url_shape(text: str) -> str | None:
    """`scheme://…` when `text` looks like a URL (however mistyped), else None. A path that
    starts with `/`, `./`, `../` or `~` is always a path."""
    stripped = text.strip()
    if stripped.startswith(("/", "./", "../", "~")):
        return None
    match = _SHAPE.match(stripped)
    if match is None:
        return None
    scheme, sep = match.groups()
    slashed = sep in ("://", ":/") and len(scheme) > 1  # `C:/…` is no scheme
    if slashed or scheme.lower() in KNOWN_SCHEMES:
        return f"{scheme}{sep}…"
    return None


def storage(text: str) -> str:
    """ATLAS_STORAGE: `s3://bucket[/prefix]` or a folder path. Raises ValueError."""
    value = text.strip()
    if value.startswith("s3://"):
        bucket = value[5:].split("/", 1)[0]
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(
                "s3://… names no valid bucket (3-63 lower-case letters, digits, '.' or '-'); "
                "write s3://BUCKET/PREFIX"
            )
        return value
    shape = url_shape(value)
    if shape is None and _USERINFO.match(value):
        shape = "USER:…@HOST without a scheme"
    if shape is not None:
        raise ValueError(
            f"{shape!r} looks like a URL but not one Atlas reads; write s3://BUCKET/PREFIX "
            "(lower-case s3, two slashes) for S3, or a folder path (start it with ./ if the "
            "folder's name really looks like this)"
        )
    if not value:
        raise ValueError("is empty; write s3://BUCKET/PREFIX or a folder path")
    return value


def path(text: str) -> Path | None:
    """A setting that takes a local path (empty: not set; `~` is home). Raises ValueError
    for a URL."""
    value = text.strip()
    if not value:
        return None
    shape = url_shape(value)
    if shape is not None:
        raise ValueError(
            f"{shape!r} looks like a URL, but this setting takes a local path (start it "
            "with ./ if the name really looks like this)"
        )
    return Path(value).expanduser()  # `~/atlas.toml`, as a shell would have read it


def http_url(text: str) -> str | None:
    """An http(s):// endpoint (SLACK_API_URL, AWS_ENDPOINT_URL); empty: not set."""
    value = text.strip()
    if not value:
        return None
    if re.fullmatch(r"https?://[^\s/@]+(/\S*)?", value):
        return value
    shape = url_shape(value) or "text without a scheme"
    raise ValueError(f"{shape!r} is not an http:// or https:// URL; write https://HOST/…")


def postgres_url(text: str) -> str:
    """A PostgreSQL connection setting: a postgresql:// URL or libpq's key=value form.
    Anything else shaped like a URL (`postgresql:/…`, `postgres//…`, `postgresq://…`) is a
    typo that libpq would quote back, password and all."""
    value = text.strip()  # a pasted URL's spaces: libpq reads ` postgresql://…` as key=value
    if not value or value.lower().startswith(("postgresql://", "postgres://")):
        return value
    if "=" in value.split()[0]:
        return value
    shape = url_shape(value)
    if shape is None and re.match(r"[\w.-]+:[^/\s]*@", value):  # user:password@host
        shape = "USER@HOST without postgresql://"
    if shape is not None:
        raise ValueError(
            f"{shape!r} is not a PostgreSQL URL; write postgresql://USER@HOST:5432/DBNAME"
        )
    return value


def unencoded_at(url: str) -> bool:
    """Whether a postgresql:// URL's user or password holds a raw '@' (two before the host)."""
    value = url.strip()
    if not value.lower().startswith(("postgresql://", "postgres://")):
        return False
    authority = value.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    return authority.count("@") > 1


def dbname_of(url: str) -> str | None:
    """The database a URL names, read leniently from its path: for naming a job whose URL
    libpq refused, so its failure is recorded under the right database."""
    found = re.search(r"://[^/]*/([^/?#\s]+)", url.strip())
    return found.group(1) if found else None
