"""Masking of reporters' contacts: enough to recognise a caller, not to call them."""

from typing import Literal

Kind = Literal["name", "phone", "email", "account"]


def mask(value: str | None, kind: Kind) -> str | None:
    """张三丰 → 张**, 13812345678 → 138****5678, li@x.cn → l*@x.cn, wx_abcdef → wx****."""
    if not value:
        return value
    if kind == "name":
        return value[0] + "*" * max(1, len(value) - 1)
    if kind == "phone":
        digits = value.strip()
        if len(digits) >= 7:
            return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
        return "*" * len(digits)
    if kind == "email":
        local, _, domain = value.partition("@")
        return (local[:1] + "*" * max(1, len(local) - 1)) + ("@" + domain if domain else "")
    return value[:2] + "****"
