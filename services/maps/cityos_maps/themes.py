"""Thematic maps as data: each theme is a YAML file of layers, filters, figures and charts.

A city adds a theme by dropping a file into CITYOS_MAPS_THEMES_DIR (same `id` replaces a shipped
one); no code. Layer kinds, metrics and chart kinds are the closed vocabularies below, which the
web application and `board.py` both implement; loading checks every file against them, so a
typo fails at start-up, not on the big screen.
"""

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec
import yaml
from msgspec import Meta, Struct

SHIPPED = Path(__file__).parent / "themes"

LayerKind = Literal[
    "divisions",  # districts and streets of the city files
    "roads",      # the road network entity dataset
    "vehicles",   # live positions of the vehicle datasets (SSE)
    "sensors",    # live sensor readings coloured by thresholds (SSE)
    "cases",      # open cases (SSE), filtered by category / group / status
    "hotspots",   # cases counted per grid cell
    "density",    # observations per grid cell over the last minutes (spatio-temporal cells)
    "entities",   # an entity dataset (enterprises, shelters, POIs...), coloured by attribute
    "staypoints",  # stored stay points of a vehicle dataset
    "staff",      # field staff on duty: live positions of the staff dataset (SSE), by unit
]
LAYER_KINDS: tuple[str, ...] = get_args(LayerKind)
ChartKind = Literal["bar", "pie", "line", "rank", "gauge"]

Id = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,40}$")]


class Text(Struct, frozen=True, forbid_unknown_fields=True):
    """A label in Chinese and English (the interface shows one of them)."""

    zh: str
    en: str


class CaseFilter(Struct, frozen=True, forbid_unknown_fields=True):
    """Which cases a layer, figure or chart counts; every given condition must hold."""

    categories: list[str] | None = None  # category codes
    groups: list[str] | None = None  # category groups (市容环境...)
    statuses: list[str] | None = None
    open: bool | None = None  # not closed, merged or rejected
    today: bool | None = None  # received since local midnight
    overdue: bool | None = None  # past the disposal deadline and not handled


class Style(Struct, frozen=True, forbid_unknown_fields=True):
    color: str = "#38bdf8"
    # Colour by an attribute's value (entities: status), or by speed/threshold classes.
    color_by: str | None = None
    colors: dict[str, str] = msgspec.field(default_factory=dict)
    radius: float = 5.0
    opacity: float = 0.9
    # Sensors: reading above which a site is over its threshold (and amber from `warn`).
    threshold: float | None = None
    warn: float | None = None
    label: str | None = None  # attribute shown as the label


class Layer(Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    kind: LayerKind
    title: Text
    visible: bool = True
    # roads/entities/density/staypoints/staff; vehicles: a subset
    dataset: str | None = None
    category: str | None = None  # entities: one category only
    cases: CaseFilter | None = None
    style: Style = msgspec.field(default_factory=Style)
    minutes: Annotated[int, Meta(ge=1, le=1440)] = 15  # density/staypoints window
    cell_m: Annotated[float, Meta(ge=100, le=5000)] = 500.0  # hotspots/density cell size
    selectable: bool = True  # box select lists what this layer shows
    legend: bool = True


class Filter(Struct, frozen=True, forbid_unknown_fields=True):
    """A switch on the screen: shows only the layer items whose `field` is one of the chosen
    options (e.g. cases by category group, vehicles by speed class)."""

    id: Id
    title: Text
    layer: Id
    field: Literal["group", "category", "status", "speed_class", "color_by"]
    options: list[str] = msgspec.field(default_factory=list)  # empty: every value seen


class Figure(Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    title: Text
    metric: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    unit: Text | None = None
    format: Literal["int", "percent", "float"] = "int"
    # Which direction is bad (the figure turns red past it).
    alert_above: float | None = None


class Chart(Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    title: Text
    kind: ChartKind
    metric: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class View(Struct, frozen=True, forbid_unknown_fields=True):
    """Initial map view; default: the whole city."""

    center: list[float] | None = None  # [lon, lat]
    zoom: float | None = None


class Theme(Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    title: Text
    order: int = 100
    description: Text | None = None
    overall: bool = False  # the overall situation map (shown first)
    wartime: bool = False  # offers the polygon tool and task issuing by default
    view: View = msgspec.field(default_factory=View)
    layers: list[Layer] = msgspec.field(default_factory=list)
    filters: list[Filter] = msgspec.field(default_factory=list)
    figures: list[Figure] = msgspec.field(default_factory=list)
    charts: list[Chart] = msgspec.field(default_factory=list)


class ThemeError(ValueError):
    pass


def _check(theme: Theme, metrics: frozenset[str], source: Path) -> None:
    layer_ids = [layer.id for layer in theme.layers]
    if len(set(layer_ids)) != len(layer_ids):
        raise ThemeError(f"{source}: two layers share an id")
    for f in theme.filters:
        if f.layer not in layer_ids:
            raise ThemeError(f"{source}: filter {f.id} names unknown layer {f.layer}")
    items: list[Figure | Chart] = [*theme.figures, *theme.charts]
    for item in items:
        if item.metric not in metrics:
            raise ThemeError(f"{source}: {item.id} uses unknown metric {item.metric!r}; "
                             f"one of {sorted(metrics)}")
    for layer in theme.layers:
        if layer.kind in ("roads", "entities", "density", "staypoints", "staff") and \
                not layer.dataset:
            raise ThemeError(f"{source}: layer {layer.id} ({layer.kind}) needs a dataset")


def load_file(path: Path, metrics: frozenset[str]) -> Theme:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        theme = msgspec.convert(raw, Theme)
    except (yaml.YAMLError, msgspec.ValidationError) as exc:
        raise ThemeError(f"{path}: {exc}") from exc
    _check(theme, metrics, path)
    return theme


def load_themes(metrics: frozenset[str], extra_dir: Path | None = None) -> dict[str, Theme]:
    """Shipped themes, then the city's own (same id replaces), ordered for the switcher."""
    themes: dict[str, Theme] = {}
    for directory in (SHIPPED, extra_dir):
        if directory is None:
            continue
        for path in sorted(directory.glob("*.y*ml")):
            theme = load_file(path, metrics)
            themes[theme.id] = theme
    if not themes:
        raise ThemeError("no themes found")
    return dict(sorted(themes.items(), key=lambda kv: (not kv[1].overall, kv[1].order, kv[0])))


def staff_datasets(themes: dict[str, Theme]) -> frozenset[str]:
    """The datasets the `staff` layers draw: their positions are followed live."""
    return frozenset(layer.dataset for t in themes.values() for layer in t.layers
                     if layer.kind == "staff" and layer.dataset)


def summary(theme: Theme) -> dict[str, Any]:
    return {"id": theme.id, "title": msgspec.to_builtins(theme.title), "order": theme.order,
            "overall": theme.overall, "wartime": theme.wartime}
