"""The TOML configuration: models, `${VAR}` expansion, per-source contract merging.

`load_config(path)` returns a validated `Config` or raises `ConfigError`, whose message names the file,
the key and what was expected (with "did you mean" for a misspelt key). Paths in the config (spool, quarantine,
dead letters, a SQLite store) are relative to the working directory of the command, not to the config file.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .stores.urls import DEFAULTS, check_url
from .violations import ALLOWED_ACTIONS, DEFAULT_ACTIONS, Action, Code

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?P<port>:[0-9]{1,5})?")




class _KeyedError(ValueError):
    """A validation error about a key below the one being validated (`key` is relative to it)."""

    def __init__(self, key: str, text: str) -> None:
        super().__init__(f"{key}: {text}")
        self.key, self.text = key, text


#: keys whose `${VAR}` may be unset until the value is used (secrets a replay does not need)
_DEFERRED = re.compile(r"^(customerio\.(site_id|api_key|app_api_key)|upstream\.write_key"
                       r"|sources\.[^.]+\.(write_key|upstream_write_key|webhook_secret)"
                       r"|service\.operator_token)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GroupTrait(_Model):
    """An attribute owned by the group, optionally typed, enumerated and owned by one source."""

    type: Literal["string", "number", "integer", "boolean", "timestamp"] | None = None
    enum: list[str | int | float | bool] | None = None
    owner: str | None = None


_DURATION = re.compile(r"([1-9][0-9]*)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> int:
    """A duration such as ``30d``, ``6h``, ``5m`` or ``90s`` in seconds (ValueError otherwise)."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected a duration like 30d, 6h, 5m or 90s, got {text!r}")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


class Rollup(_Model):
    """A group attribute computed from members' events: the latest `value`, or a count over `count_window`."""

    event: str
    value: str | None = None  # "timestamp" (the event's time) or "properties.NAME"
    count_window: str | None = None

    @field_validator("value")
    @classmethod
    def _value(cls, value: str | None) -> str | None:
        if value is not None and value != "timestamp" and not (value.startswith("properties.") and value[11:]):
            raise ValueError(f"expected \"timestamp\" or \"properties.NAME\", got {value!r}")
        return value

    @field_validator("count_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            duration_seconds(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Rollup:
        if (self.value is None) == (self.count_window is None):
            raise ValueError("expected exactly one of value or count_window")
        return self


class Contract(_Model):
    """The data contract one source is held to."""

    version: str = "unversioned"
    group_key: str = "group_id"
    group_id_pattern: str | None = None
    require_group: list[str] = Field(default_factory=list)
    default_object_type_id: str = "1"
    object_types: dict[str, str] = Field(default_factory=dict)  # object type id -> the concept it is: documentation
    attach_group_traits: list[str] = Field(default_factory=list)
    group_traits: dict[str, GroupTrait] = Field(default_factory=dict)
    actions: dict[Code, str] = Field(default_factory=dict)  # each checked against the code's own actions
    rollups: dict[str, Rollup] = Field(default_factory=dict)
    rollup_interval: str = "5m"  # at most one rollup update per group per interval of event time
    freshness: str | None = None  # coverage report: a group not updated for this long is stale
    id_change_window: str = "7d"  # coverage report: members all moving to one other group within it: an id change
    future_tolerance: str = "1d"  # a message dated further ahead of its receipt is `future_timestamp`
    _customerio: Any = PrivateAttr(default=None)  # the config's [customerio], set by `Config`

    @cached_property  # read for every message: once, not through pydantic's private-attribute lookup
    def compat(self) -> str:
        """`[customerio] compat`: whose Customer.io mapping to reproduce ("segment" | "rudderstack" |
        "rudderstack-v2"). Every step (resolution, contract, learning, the mapping) reads it here, so all of them
        agree on a message."""
        return self._customerio.compat if self._customerio is not None else "segment"

    @cached_property
    def conventions(self) -> str:
        """Whose message conventions the profile follows ("segment" | "rudderstack", both RudderStack paths):
        where object types and group actions are read, what lifecycle events do to the store."""
        return "segment" if self.compat == "segment" else "rudderstack"

    @cached_property
    def email_user_id(self) -> str:
        """`[customerio] email_user_id`: how Customer.io reads an email-shaped userId that RudderStack's v1 path
        puts in the URL ("id" | "email")."""
        return self._customerio.email_user_id if self._customerio is not None else "id"

    @cached_property
    def device_token_event(self) -> str | None:
        """`[customerio] device_token_event` (RudderStack's `deviceTokenEventName`)."""
        return self._customerio.device_token_event if self._customerio is not None else None

    @field_validator("rollup_interval", "freshness", "future_tolerance", "id_change_window")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None:
            duration_seconds(value)
        return value

    @field_validator("group_id_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"a valid regular expression ({exc})") from None
        return value

    @field_validator("default_object_type_id", mode="before")
    @classmethod
    def _object_type(cls, value: Any) -> str:
        if isinstance(value, bool) or not re.fullmatch(r"[1-9][0-9]*", str(value)):
            raise ValueError("a positive integer object type id, as a string or a number")
        return str(value)

    @field_validator("object_types")
    @classmethod
    def _named_types(cls, value: dict[str, str]) -> dict[str, str]:
        for type_id, name in value.items():
            if not re.fullmatch(r"[1-9][0-9]*", type_id):
                raise _KeyedError(type_id, "expected a positive integer object type id as the key")
            if not name.strip():
                raise _KeyedError(type_id, "expected the name of the concept (e.g. \"household\"), got an empty string")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        for code, action in self.actions.items():
            if action not in ALLOWED_ACTIONS[code]:  # only the actions this code allows are offered
                allowed = ALLOWED_ACTIONS[code]
                raise _KeyedError(f"actions.{code}", f"expected {' | '.join(allowed)}, got {action!r}"
                                  f"{did_you_mean(action, allowed)}")
        unknown = [name for name in self.attach_group_traits if name not in self.group_traits]
        if unknown:
            raise _KeyedError("attach_group_traits", f"{unknown} are not declared in [contract.group_traits]")
        return self

    @cached_property
    def group_id_regex(self) -> re.Pattern[str] | None:
        return re.compile(self.group_id_pattern) if self.group_id_pattern else None

    def action(self, code: Code) -> Action:
        return self.actions.get(code, DEFAULT_ACTIONS[code])

    def requires_group(self, event: str) -> bool:
        return "*" in self.require_group or event in self.require_group


def _not_empty(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not value.get_secret_value():
        raise ValueError("expected a non-empty secret")
    return value


class Source(_Model):
    """A sender of messages: selected by its write key; may override parts of the contract."""

    write_key: SecretStr | None = None
    upstream_write_key: SecretStr | None = None  # the key its messages go upstream under (default: write_key)
    webhook_secret: SecretStr | None = None  # the service: its requests must carry X-Signature (HMAC-SHA1 of the body)
    contract: dict[str, Any] = Field(default_factory=dict)

    _secret = field_validator("webhook_secret", "upstream_write_key")(_not_empty)


class Sending(_Model):
    """How a destination's requests are timed out and retried (Customer.io and the upstream alike)."""

    max_retries: int = Field(8, ge=0)
    retry_base: float = Field(0.5, gt=0)  # seconds: backoff before retry n is uniform in [0, min(cap, base * 2**n)]
    retry_cap: float = Field(30.0, gt=0)  # also the longest wait a `Retry-After` can ask for
    timeout: float = Field(10.0, gt=0)


class CustomerIO(Sending):
    """Where and how to deliver to Customer.io's Track API v2."""

    site_id: SecretStr | None = None
    api_key: SecretStr | None = None
    region: Literal["us", "eu"] = "us"
    url: str | None = None
    batch_size: int = Field(100, ge=1, le=1000)
    rate_limit: float = Field(100.0, gt=0)
    dead_letter: str = "groupspec-dead-letter.jsonl"
    compat: Literal["segment", "rudderstack", "rudderstack-v2"] = "segment"  # whose Customer.io mapping to reproduce
    device_token_event: str | None = None  # rudderstack, rudderstack-v2: one more event that registers a device token
    email_user_id: Literal["id", "email"] = "id"  # rudderstack: how the workspace reads an email-shaped URL identifier
    app_api_key: SecretStr | None = None  # App API bearer key: `groupspec verify` reads Customer.io back
    app_url: str | None = None  # the App API base URL, overriding `region`'s
    app_rate_limit: float = Field(9.0, gt=0, le=10)  # requests per second: the App API answers 429 above 10
    verify_max_pages: int = Field(1000, ge=1)  # `groupspec verify`: relationship pages read per object at most
    verify_time_limit: str = "30m"  # `groupspec verify`: the run reads the App API this long at most

    @field_validator("device_token_event")
    @classmethod
    def _event_name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("an event name, got an empty string")
        return value

    @model_validator(mode="after")
    def _profile(self) -> CustomerIO:
        if self.device_token_event is not None and self.compat == "segment":
            raise _KeyedError("device_token_event",
                              "only with compat = \"rudderstack\" or \"rudderstack-v2\" (RudderStack's "
                              f"deviceTokenEventName), got compat = {self.compat!r}")
        if self.email_user_id != "id" and self.compat != "rudderstack":
            raise _KeyedError("email_user_id", "only with compat = \"rudderstack\" (RudderStack's v1 path puts the "
                              f"userId in the URL), got compat = {self.compat!r}")
        return self

    @field_validator("verify_time_limit")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @field_validator("url", "app_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/@\s]+(/\S*)?", value):
            raise ValueError("expected an http(s) URL with no credentials in it (they go in site_id and api_key)")
        return value

    @property
    def base_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        return "https://track-eu.customer.io" if self.region == "eu" else "https://track.customer.io"

    @property
    def app_base_url(self) -> str:
        """The App API host of `region` (`app_url` overrides it)."""
        if self.app_url:
            return self.app_url.rstrip("/")
        return "https://api-eu.customer.io" if self.region == "eu" else "https://api.customer.io"


class Store(_Model):
    url: str = "memory://"
    retention: str | None = None  # event-time window of arrival records, history, links and the rollup log
    compact_every: str = "10m"  # the service compacts at most this often (by its clock)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        return check_url(value)

    @field_validator("retention", "compact_every")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            duration_seconds(value)
        return value


class Quarantine(_Model):
    path: str = "groupspec-quarantine.jsonl"


class Service(_Model):
    """`groupspec serve`: where accepted requests are spooled and when the spool counts as unhealthy."""

    spool: str = "groupspec-spool.db"
    sync: Literal["full", "normal"] = "full"  # full: fsync every commit (power loss); normal: process crash
    max_spool_depth: int = Field(100_000, ge=1)  # messages waiting beyond this: /health answers 503
    read_timeout: float = Field(10.0, gt=0)  # seconds for a request's headers, and again for its body, to arrive
    max_header_bytes: int = Field(16_384, ge=1024)  # request line and headers; more is refused (431)
    operator_token: SecretStr | None = None  # Bearer token for /report.json and /metrics
    cors_origins: list[str] = Field(default_factory=list)  # web pages whose analytics.js may post to the intake

    _secret = field_validator("operator_token")(_not_empty)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            match = _ORIGIN.fullmatch(origin)
            if match is None or match["port"] == {"http": ":80", "https": ":443"}[match["scheme"]]:
                raise ValueError(f"expected origins as browsers send them: scheme://host[:port] (http or https, "
                                 f"lowercase, no path, no default port), got {origin!r}")
        return value


class Upstream(Sending):
    """An optional Segment-compatible endpoint (Segment, a RudderStack data plane) that gets the enriched messages."""

    url: str | None = None
    write_key: SecretStr | None = None
    rate_limit: float | None = Field(None, gt=0)  # requests per second; None: no limit
    dead_letter: str = "groupspec-upstream-dead-letter.jsonl"


class Config(_Model):
    """A whole groupspec configuration file."""

    contract: Contract = Field(default_factory=Contract)
    sources: dict[str, Source] = Field(default_factory=dict)
    customerio: CustomerIO = Field(default_factory=CustomerIO)
    store: Store | None = None
    quarantine: Quarantine = Field(default_factory=Quarantine)
    service: Service = Field(default_factory=Service)
    upstream: Upstream = Field(default_factory=Upstream)
    path: str = "<config>"
    missing_env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _contracts_know_the_profile(self) -> Config:
        self.contract._customerio = self.customerio
        return self

    @model_validator(mode="after")
    def _write_keys_are_distinct(self) -> Config:
        seen: dict[str, str] = {}
        for name, src in self.sources.items():
            key = src.write_key.get_secret_value() if src.write_key is not None else None
            if key is None:
                continue
            if key in seen:  # the key itself is a secret: named by where it is, never shown
                raise _KeyedError(f"sources.{name}.write_key", f"the same write key as sources.{seen[key]}.write_key; "
                                  f"a write key selects one source (its contract and the traits it owns)")
            seen[key] = name
        return self

    @model_validator(mode="after")
    def _owners_are_sources(self) -> Config:
        for name in (None, *self.sources):
            own = self.contract.group_traits if name is None else self.sources[name].contract.get("group_traits")
            if not isinstance(own, dict):
                continue
            for trait, rule in own.items():
                owner = rule.owner if isinstance(rule, GroupTrait) else rule.get("owner") if isinstance(rule, dict) else None
                if owner is not None and owner not in self.sources:
                    where = "contract" if name is None else f"sources.{name}.contract"
                    have = ", ".join(self.sources) or "none is declared"
                    raise _KeyedError(f"{where}.group_traits.{trait}.owner",
                                      f"expected a source of [sources] ({have}), got {owner!r}{did_you_mean(owner, self.sources)}")
        return self

    @model_validator(mode="after")
    def _retention_covers_rollups(self) -> Config:
        retention = self.store.retention if self.store else None
        if retention is None:
            return self
        for name in (None, *self.sources):
            try:
                contract = self.contract_for(name)
            except ValidationError:  # `parse_config` reports a broken source contract
                continue
            windows = [duration_seconds(r.count_window) for r in contract.rollups.values() if r.count_window]
            if windows:
                needed = max(windows) + duration_seconds(contract.rollup_interval)
                if duration_seconds(retention) < needed:
                    where = "[contract]" if name is None else f"[sources.{name}.contract]"
                    raise _KeyedError("store.retention", f"expected at least the longest rollup count_window plus "
                                      f"rollup_interval of {where} ({needed}s), got {retention!r}")
        return self

    @property
    def retention_seconds(self) -> int | None:
        """`[store] retention` in seconds; None keeps everything."""
        return duration_seconds(self.store.retention) if self.store and self.store.retention else None

    def contract_for(self, source: str | None) -> Contract:
        """The contract of `source`: its `[sources.NAME.contract]` merged over `[contract]`."""
        if source is None or source not in self.sources or not self.sources[source].contract:
            return self.contract
        return self._merged[source]

    def upstream_key(self, source: str | None) -> str:
        """The write key `source`'s messages go upstream under: its `upstream_write_key`, else the write key they
        arrived with (its `write_key`), else `upstream.write_key` (a webhook-fed source, a message of no source).
        ConfigError when the one it needs is not set."""
        src = self.sources.get(source) if source is not None else None
        if src is not None:
            for name, value in (("upstream_write_key", src.upstream_write_key), ("write_key", src.write_key)):
                key = f"sources.{source}.{name}"
                if value is not None or key in self.missing_env:
                    return self.require(key, value)
        return self.require("upstream.write_key", self.upstream.write_key)

    def source_for_key(self, write_key: str) -> str | None:
        for name, src in self.sources.items():
            if src.write_key is not None and src.write_key.get_secret_value() == write_key:
                return name
        return None

    @property
    def customerio_configured(self) -> bool:
        """Customer.io delivery is on unless neither credential is set (nor asked for from the environment)."""
        asked = any(key.startswith("customerio.") for key in self.missing_env)
        return asked or self.customerio.site_id is not None or self.customerio.api_key is not None

    def store_url(self, door: str, override: str | None = None) -> str:
        """The store a door uses: `override` (a `--store`); else, for a "live" door (one that changes the
        production store), `[store] url`; else the door's default (`stores.DEFAULTS`: an "offline" run never
        touches `[store]`)."""
        if override is not None:
            try:
                return check_url(override)
            except ValueError as exc:
                raise ConfigError(f"--store: expected {exc}, got {override!r}") from None
        return self.store.url if self.store and door == "live" else DEFAULTS[door]

    @property
    def _merged(self) -> dict[str, Contract]:
        cache = self.__dict__.get("_merged_cache")
        if cache is None:
            cache = {name: _merge_contract(self.contract, src.contract) for name, src in self.sources.items()}
            for merged in cache.values():
                merged._customerio = self.customerio
            object.__setattr__(self, "_merged_cache", cache)  # frozen model: computed once
        return cache

    def require(self, key: str, value: SecretStr | None) -> str:
        """The secret at `key`, or a ConfigError saying why it is not set."""
        if value is not None:
            return value.get_secret_value()
        if key in self.missing_env:
            raise ConfigError(f"{self.path}: {key}: environment variable {self.missing_env[key]} is not set")
        raise ConfigError(f"{self.path}: {key}: expected a value, none is configured")


def _merge_contract(base: Contract, override: dict[str, Any]) -> Contract:
    data = base.model_dump(exclude_unset=False)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return Contract.model_validate(data)


def _expand(node: Any, path: str, missing: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _expand(v, f"{path}.{k}" if path else k, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{path}[{i}]", missing) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        names = _ENV_VAR.findall(node)
        absent = [name for name in names if name not in os.environ]
        if absent:
            missing[path] = absent[0]
            return None
        return _ENV_VAR.sub(lambda m: os.environ[m.group(1)], node)
    return node


#: what a pydantic error type expected, in the config's words
_EXPECTED = {
    "string_type": "a string", "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false", "dict_type": "a table",
    "model_type": "a table", "model_attributes_type": "a table",
}
_BOUNDS = {"greater_than": "greater than {gt}", "greater_than_equal": "at least {ge}", "less_than": "less than {lt}",
           "less_than_equal": "at most {le}"}
_PLURAL = {str: "strings", int: "whole numbers", float: "numbers", bool: "booleans"}
_KIND = {int: "a number", float: "a number", bool: "a boolean", list: "a list", dict: "a table"}


def did_you_mean(given: Any, choices: Any) -> str:
    """`` (did you mean `x`?)`` when one of `choices` is close to `given`, else an empty string."""
    close = difflib.get_close_matches(given, list(choices), n=1) if isinstance(given, str) else []
    return f" (did you mean `{close[0]}`?)" if close else ""


def _annotation(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The type annotation at `loc` below the model `root` (None when the path leaves the models)."""
    node: Any = root
    for part in loc:
        node = _optional(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(part)
            node = field.annotation if field is not None else None
        elif get_origin(node) is dict:
            node = get_args(node)[1]
        else:
            return None
    return node


def _optional(node: Any) -> Any:
    """`X | None` -> X; anything else as it is."""
    if get_origin(node) in (Union, type(None | str)) and type(None) in get_args(node):
        return next(arg for arg in get_args(node) if arg is not type(None))
    return node


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    return f"a list {value!r}" if isinstance(value, list) else repr(value)


def _describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error as "key: expected …, got …", in the config's words."""
    loc = tuple(part for part in error["loc"] if part != "[key]")
    key = ".".join(str(part) for part in loc)
    kind, ctx, given = error["type"], error.get("ctx", {}), error.get("input")
    cause = ctx.get("error")
    if isinstance(cause, _KeyedError):
        return f"{key + '.' if key else ''}{cause.key}: {cause.text}"
    if kind == "extra_forbidden":
        fields = _optional(_annotation(root, loc[:-1]))
        known = fields.model_fields if isinstance(fields, type) and issubclass(fields, BaseModel) else ()
        return f"{key}: unknown key{did_you_mean(str(loc[-1]), known)}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx["expected"])
        return f"{key}: expected {' | '.join(choices)}, got {given!r}{did_you_mean(given, choices)}"
    if kind == "list_type":
        items = get_args(_optional(_annotation(root, loc)))
        kinds = [_PLURAL.get(arg, "values") for arg in get_args(items[0]) or items] if items else ["values"]
        what = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]
        return f"{key}: expected a list of {what}, got {_got(given)}"
    if kind in _EXPECTED:  # a secret's wrong value is not shown, only its kind
        secret = _optional(_annotation(root, loc)) is SecretStr
        return f"{key}: expected {_EXPECTED[kind]}, got {_KIND.get(type(given), 'a value') if secret else _got(given)}"
    if kind in _BOUNDS:
        return f"{key}: expected a number {_BOUNDS[kind].format(**ctx)}, got {_got(given)}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key}: {message}" if kind == "value_error" else f"{key}: expected {message.removeprefix('Input should be ')}"


def parse_config(data: dict[str, Any], path: str = "<config>") -> Config:
    """Validate an already-parsed TOML document."""
    missing: dict[str, str] = {}
    data = _expand(data, "", missing)
    needed = {key: var for key, var in missing.items() if not _DEFERRED.match(key)}
    if needed:
        raise ConfigError("; ".join(f"{path}: {key}: environment variable {var} is not set" for key, var in needed.items()))
    try:
        config = Config.model_validate({**data, "path": path, "missing_env": missing})
        for name in config.sources:
            try:
                config.contract_for(name)
            except ValidationError as exc:
                raise ConfigError(
                    "; ".join(f"{path}: sources.{name}.contract.{_describe(e, Contract)}" for e in exc.errors())
                ) from None
    except ValidationError as exc:
        raise ConfigError("; ".join(f"{path}: {_describe(e, Config)}" for e in exc.errors())) from None
    return config


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, expand and validate the TOML file at `path`."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the config as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(data, path)
