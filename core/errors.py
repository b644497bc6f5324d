"""Domain errors. Each carries its meaning (a stable code and an HTTP-ish status);
every transport renders them once, in its own shape."""

from __future__ import annotations


class GazouError(Exception):
    """Base of every error the domain raises on purpose."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(GazouError):
    """A parameter or body field is malformed or out of range."""

    code = "invalid_input"


class NotFound(GazouError):
    """The thing asked for does not exist (or is not visible to the caller)."""

    status = 404
    code = "not_found"


class UnsupportedImage(GazouError):
    """The bytes are not a JPEG, PNG, GIF or WebP image."""

    code = "unsupported_image"


class CorruptImage(GazouError):
    """The bytes claim an image format but do not decode (truncated or damaged)."""

    code = "corrupt_image"


class ImageTooLarge(GazouError):
    """Too many bytes or too many pixels (a decompression bomb)."""

    status = 413
    code = "image_too_large"


class DuplicateImage(GazouError):
    """The exact bytes are already stored; `existing_id` names the stored image."""

    status = 409
    code = "duplicate_image"

    def __init__(self, existing_id: str) -> None:
        super().__init__("Image already uploaded", existing_id=existing_id)
        self.existing_id = existing_id


class Unauthorized(GazouError):
    """No credentials, or credentials that are unknown, expired or revoked."""

    status = 401
    code = "unauthorized"


class Forbidden(GazouError):
    """Valid credentials lacking the needed scope or role."""

    status = 403
    code = "forbidden"


class RateLimited(GazouError):
    """Too many requests in the current window; details: retry_after (seconds, float),
    limit (requests per window), reset (unix time the window ends)."""

    status = 429
    code = "rate_limited"


class Conflict(GazouError):
    """The action clashes with the current state (e.g. a request already pending)."""

    status = 409
    code = "conflict"


class StorageFull(GazouError):
    """The disk (or quota) under DATA_DIR is full: nothing was stored."""

    status = 507
    code = "storage_full"


class StorageUnavailable(GazouError):
    """DATA_DIR cannot be written (read-only, not permitted, failing): nothing was stored."""

    status = 503
    code = "storage_unavailable"


class SettingsError(Exception):
    """A setting is missing or malformed; `name` is the environment variable."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"setting {name}: {problem}")
        self.name = name
