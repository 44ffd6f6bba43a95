"""The OpenAPI 3.1 document each service serves at ``GET /api/v1/openapi.json``, read from its package.

Each service ships its own document beside its code, as package data: ``signer/openapi.json``,
``distributor/openapi.json``, ``witness/openapi.json`` (pyproject.toml's ``package-data``), so an
installed wheel serves exactly the document of the code it runs, and a change to a route and to its
document is one diff in one package. ``tests/api/test_openapi.py`` checks each document against the
OpenAPI 3.1 meta-schema, checks that each live service serves it byte for byte, and runs schemathesis
against the live services with it.

This module names no project package (``tests/test_boundaries.py``): the caller passes its own
package name, e.g. ``openapi_document(__package__)`` in ``distributor/app.py``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

#: The file name of the document inside each service's package.
DOCUMENT = "openapi.json"
#: The only OpenAPI version the documents are written in.
OPENAPI_VERSION = "3.1.0"


class OpenAPIDocumentError(Exception):
    """The package holds no document, or one that is not an OpenAPI 3.1.0 JSON object."""


@functools.cache
def openapi_document(package: str) -> bytes:
    """The exact bytes of ``<package>/openapi.json``, to be served verbatim as ``application/json``.

    ``package`` is an importable package (the calling service's own). The bytes are read once per
    process. Raises :class:`OpenAPIDocumentError` when the file is missing, is not UTF-8 JSON, or is
    not an object whose ``openapi`` field is ``"3.1.0"``: a service must fail at start-up rather than
    serve a broken document.
    """
    try:
        data = resources.files(package).joinpath(DOCUMENT).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise OpenAPIDocumentError(f"{package}: no {DOCUMENT} in the package ({exc})") from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OpenAPIDocumentError(f"{package}/{DOCUMENT}: not UTF-8 JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("openapi") != OPENAPI_VERSION:
        raise OpenAPIDocumentError(f"{package}/{DOCUMENT}: expected an object with \"openapi\": "
                                   f"\"{OPENAPI_VERSION}\"")
    return data


__all__ = ["DOCUMENT", "OPENAPI_VERSION", "OpenAPIDocumentError", "openapi_document"]
