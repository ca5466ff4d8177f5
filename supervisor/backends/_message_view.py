"""Fast, lazy reads of generated messages: the wire bytes read once by
:mod:`._wire`, each field decoded when first asked for.

betterproto2 builds a dataclass per message and converts every field up
front; for the cgroup metrics, sampled for every task at every interval,
that parse costs many times what the library does with the figures. A
:class:`MessageView` answers the same attribute names with the same values
(proto3 defaults for absent fields, ``None`` for an absent message) from the
generated class's own field table, so the code reading it is the code that
reads the generated message. Only the field types those messages use are
known here; any other is refused when the class is first viewed.
"""

from __future__ import annotations

from typing import Any, cast

import betterproto2

from ._wire import LEN, VARINT, fields, text, varints

__all__ = ["MessageView", "view"]

_UINT = {betterproto2.TYPE_UINT64: (1 << 64) - 1, betterproto2.TYPE_UINT32: (1 << 32) - 1}
_KNOWN = {*_UINT, betterproto2.TYPE_STRING, betterproto2.TYPE_MESSAGE}


class _Field:
    __slots__ = ("mask", "message", "name", "repeated", "type")

    def __init__(self, name: str, type: str, repeated: bool, message: _Schema | None) -> None:
        self.name = name
        self.type = type
        self.repeated = repeated
        self.message = message
        self.mask = _UINT.get(type, 0)


class _Schema:
    """A generated class's fields by name and by number."""

    __slots__ = ("by_name", "by_number", "cls")

    def __init__(self, cls: type[betterproto2.Message]) -> None:
        self.cls = cls
        self.by_name: dict[str, tuple[int, _Field]] = {}
        self.by_number: dict[int, _Field] = {}


_SCHEMAS: dict[type[betterproto2.Message], _Schema] = {}


def _schema(cls: type[betterproto2.Message]) -> _Schema:
    found = _SCHEMAS.get(cls)
    if found is not None:
        return found
    schema = _SCHEMAS[cls] = _Schema(cls)
    # A classproperty, which mypy cannot bind on a subclass's type.
    meta: betterproto2.ProtoClassMetadata = getattr(cls, "_betterproto")  # noqa: B009
    for name, field_meta in meta.meta_by_field_name.items():
        kind = field_meta.proto_type
        if kind not in _KNOWN or field_meta.map_meta is not None:
            del _SCHEMAS[cls]
            raise TypeError(f"{cls.__name__}.{name}: {kind} fields are not viewed")
        message = _schema(meta.cls_by_field[name]) if kind == betterproto2.TYPE_MESSAGE else None
        field = _Field(name, kind, bool(field_meta.repeated), message)
        schema.by_name[name] = (field_meta.number, field)
        schema.by_number[field_meta.number] = field
    return schema


class MessageView:
    """A generated message's fields, read from its wire bytes: plain numbers
    at once, strings, lists and messages when first asked for."""

    def __init__(self, schema: _Schema, data: bytes) -> None:
        # Attributes live in the instance dict, so a number already read is
        # a plain attribute lookup; __getattr__ runs only for the rest.
        values = self.__dict__
        values["_schema"] = schema
        pending: dict[int, list[int | bytes]] = {}
        by_number = schema.by_number
        for number, kind, value in fields(data):
            field = by_number.get(number)
            if field is None:
                continue
            if field.mask and not field.repeated:
                # Another wire type than the field's makes it an unknown
                # field, as protobuf reads it.
                if kind == VARINT:
                    values[field.name] = cast(int, value) & field.mask
            elif kind == LEN or (kind == VARINT and field.mask):
                pending.setdefault(number, []).append(value)
        values["_pending"] = pending

    def __getattr__(self, name: str) -> Any:
        found = self.__dict__["_schema"].by_name.get(name)
        if found is None:
            raise AttributeError(name)
        number, field = found
        value = _decode(field, self.__dict__["_pending"].get(number, ()))
        self.__dict__[name] = value
        return value

    def __bool__(self) -> bool:
        # As betterproto2's: true when any field holds more than its default.
        schema: _Schema = self.__dict__["_schema"]
        for field in schema.by_number.values():
            value = getattr(self, field.name)
            if value is not None and value != 0 and value != "" and value != []:
                return True
        return False

    def __repr__(self) -> str:
        return f"<view of {self.__dict__['_schema'].cls.__name__}>"


def _decode(field: _Field, values: Any) -> Any:
    # Only values of the field's own wire type were kept (__init__): bytes
    # for messages and strings, ints or packed bytes for repeated numbers.
    if field.message is not None:
        if field.repeated:
            return [MessageView(field.message, v) for v in values]
        # A message sent more than once is merged, which for the wire is
        # reading its parts as one.
        if not values:
            return None
        return MessageView(field.message, b"".join(values))
    if field.type == betterproto2.TYPE_STRING:
        return text(values[-1]) if values else ""
    if not field.repeated:
        return values[-1] & field.mask if values else 0
    numbers: list[int] = []
    for value in values:
        if isinstance(value, bytes):  # packed, as proto3 writes them
            numbers.extend(v & field.mask for v in varints(value))
        else:
            numbers.append(value & field.mask)
    return numbers


def view(cls: type[betterproto2.Message], data: bytes) -> Any:
    """``data`` (a serialized ``cls``) as a :class:`MessageView` whose
    attributes are ``cls``'s.

    Raises:
        MalformedReply: bytes that are not such a message (also later, from
            an attribute whose field does not decode).
        TypeError: ``cls`` has fields of a type not viewed here.
    """
    return MessageView(_schema(cls), data)
