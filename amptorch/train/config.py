"""The training config: the original AmpTorch's ``model`` / ``optim`` / ``dataset`` / ``cmd``
dict, validated with pydantic before any work starts.

Every key the original reads is accepted with its default (see
``docs/user_guide.md``); ours are marked "amptorch" below. An unknown or
misspelt key is an error naming its path and the nearest valid key; wrong
types and out-of-range values say what was expected.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from amptorch.errors import InputError
from amptorch.models.mlp import DEFAULT_LAYERS, DEFAULT_NODES

_DTYPES = {
    "float64": "float64", "double": "float64", "torch.float64": "float64", "torch.doubletensor": "float64",
    "doubletensor": "float64", "float32": "float32", "float": "float32", "torch.float32": "float32",
    "torch.floattensor": "float32", "floattensor": "float32",
}  # fmt: skip

# alternative spellings accepted for a key (alias -> key)
ALIASES = {
    "optim": {"learning_rate": "lr", "max_epochs": "epochs"},
    "cmd": {"early_stoppping_patience": "early_stopping_patience"},
}


def _lower(value: Any) -> Any:
    """Strings in lower case (the original's names are case-insensitive); anything else as it is."""
    return value.lower() if isinstance(value, str) else value


def _name_of(value: Any) -> str:
    """A class, instance or string as a plain name ('Tanh', 'Adam')."""
    if isinstance(value, str):
        return value
    if isinstance(value, type):
        return value.__name__
    return type(value).__name__


class _Section(BaseModel):
    # allow_inf_nan=False: every float key (lr, coefficients, rates, clipping, gamma, val_split) is finite
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_default=True, allow_inf_nan=False)
    section: ClassVar[str] = ""  # its key in the config (for ALIASES)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for alias, key in ALIASES.get(cls.section, {}).items():
                if alias in data and key not in data:
                    data = {**data, key: data[alias]}
                    del data[alias]
        return data


def _check_arguments(fn: Any, args: dict, what: str, skip: set[str], extra: set[str] = frozenset(),
                     required: bool = True) -> None:  # fmt: skip
    """ValueError for an argument ``fn`` does not take (naming the nearest) or a required one missing."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: leave it to the call
        return
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = {n: p for n, p in sig.parameters.items() if n not in skip and p.kind not in variadic}
    valid = sorted(set(params) | set(extra))
    for key in args:
        if key not in valid:
            near = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.4)
            hint = f"; did you mean {near[0]!r}?" if near else f"; expected some of {valid}"
            raise ValueError(f"{what}: unknown argument {key!r}{hint}")
    if required:
        missing = [n for n, p in params.items() if p.default is p.empty and n not in args]
        if missing:
            raise ValueError(f"{what}: missing argument {missing[0]!r}; expected it in 'params'")


def _relative_path(v: str, expected: str, single: bool = False) -> None:
    """ValueError unless ``v`` is a relative path without '..' (``single``: one component, no separator)."""
    from pathlib import PurePosixPath, PureWindowsPath

    parts = PurePosixPath(v.replace("\\", "/")).parts
    bad = (
        not v.strip()
        or "\0" in v
        or PurePosixPath(v).is_absolute()
        or PureWindowsPath(v).is_absolute()
        or bool(PureWindowsPath(v).drive)
        or ".." in parts
        or (single and (len(parts) != 1 or parts[0] in (".", "..") or "/" in v or "\\" in v))
    )
    if bad:
        raise ValueError(f"expected {expected}")


class ModelSection(_Section):
    section: ClassVar[str] = "model"

    name: Literal["bpnn", "singlenn"] = "bpnn"
    get_forces: bool = True
    num_layers: int = Field(DEFAULT_LAYERS, ge=1)
    num_nodes: int = Field(DEFAULT_NODES, ge=1)
    hidden_layers: list[int] | None = None
    batchnorm: bool = False
    dropout: bool = False
    dropout_rate: float = Field(0.5, ge=0.0, lt=1.0)
    activation: Any = "tanh"
    initialization: Literal["xavier", "zero", "kaiming", "default"] = "xavier"
    element_outputs: bool = False  # amptorch: element-specific output layer for SingleNN

    _lowercase = field_validator("name", "initialization", mode="before")(_lower)

    @field_validator("activation", mode="before")
    @classmethod
    def _activation(cls, v: Any) -> str:
        from amptorch.models.mlp import ACTIVATIONS

        name = _name_of(v).lower()
        if name not in ACTIVATIONS:
            near = difflib.get_close_matches(name, list(ACTIVATIONS), n=1, cutoff=0.4)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"unknown activation {name!r}{hint}; expected one of {sorted(ACTIVATIONS)}")
        return name

    @field_validator("hidden_layers")
    @classmethod
    def _widths(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or min(v) < 1):
            raise ValueError("expected a non-empty list of positive layer widths")
        return v

    @property
    def widths(self) -> list[int]:
        return list(self.hidden_layers) if self.hidden_layers else [self.num_nodes] * self.num_layers


class EnergyRefinementSection(_Section):
    """amptorch: ``optim.energy_refinement``: after ``optim.epochs``, ``epochs`` more with the force coefficient
    lowered to ``force_coefficient`` at the constant learning rate ``lr`` (train/callbacks.EnergyRefinement)."""

    epochs: int = Field(ge=1)
    force_coefficient: float = Field(0.001, ge=0.0)
    lr: float = Field(1e-4, gt=0.0)


class OptimSection(_Section):
    section: ClassVar[str] = "optim"

    gpus: int = Field(0, ge=0)
    force_coefficient: float = Field(0.0, ge=0.0)
    stress_coefficient: float = Field(0.0, ge=0.0)  # amptorch
    loss: Literal["mse", "mae"] = "mse"
    loss_fn: Any = None
    lr: float = Field(0.1, gt=0.0)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(100, ge=0)
    optimizer: Any = "Adam"
    optimizer_args: dict[str, Any] | bool = False
    scheduler: dict[str, Any] | None = None
    metric: Literal["mae", "mse"] = "mae"
    cp_metric: Literal["energy", "forces"] = "energy"
    gradient_clipping: float | None = Field(None, gt=0.0)  # amptorch: max grad norm
    device: str | None = None  # amptorch: "cpu", "cuda", "cuda:1"; default from gpus
    energy_refinement: EnergyRefinementSection | None = None  # amptorch: a last phase with energies weighted up
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)  # amptorch: weights' moving average, scored and kept

    _lowercase = field_validator("loss", "metric", "cp_metric", mode="before")(_lower)

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer(cls, v: Any) -> str:
        import torch

        name = _name_of(v)
        if not hasattr(torch.optim, name):
            valid = [n for n in dir(torch.optim) if n[0].isupper() and n not in ("Optimizer",)]
            near = difflib.get_close_matches(name, valid, n=1)
            raise ValueError(f"unknown optimizer {name!r}" + (f"; did you mean {near[0]!r}?" if near else ""))
        return name

    @field_validator("loss_fn", mode="before")
    @classmethod
    def _loss_fn(cls, v: Any) -> Any:
        # the original's CustomLoss is what we implement; other callables are kept
        if v is None or _name_of(v) == "CustomLoss":
            return None
        if not callable(v):
            raise ValueError("expected a loss class or callable, called as loss_fn(prediction, batch)")
        return v

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: dict | None) -> dict | None:
        if v is None:
            return v
        if "policy" not in v:
            raise ValueError("expected {'policy': 'StepLR' (a torch.optim.lr_scheduler name), 'params': {...}}")
        import torch

        unknown = set(v) - {"policy", "params"}
        if unknown:
            raise ValueError(f"unknown scheduler key {sorted(unknown)[0]!r}; expected 'policy' and 'params'")
        name = _name_of(v["policy"])
        if not hasattr(torch.optim.lr_scheduler, name):
            valid = [n for n in dir(torch.optim.lr_scheduler) if n[0].isupper() and "LR" in n or n.endswith("Plateau")]
            near = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"unknown scheduler policy {name!r}{hint}; expected a torch.optim.lr_scheduler class")
        params = v.get("params") or {}
        if not isinstance(params, dict):
            raise ValueError(f"scheduler params: got {type(params).__name__}; expected a dict of {name} arguments")
        # skorch's LRScheduler takes these besides the policy's own arguments
        _check_arguments(getattr(torch.optim.lr_scheduler, name), params, f"scheduler {name}",
                         skip={"optimizer"}, extra={"step_every", "event_name"})  # fmt: skip
        return {"policy": name, "params": dict(params)}

    @model_validator(mode="after")
    def _refinement(self) -> OptimSection:
        if self.energy_refinement is not None and self.loss_fn is not None:
            raise ValueError(
                "energy_refinement: lowers the force coefficient of amptorch's own loss; expected no loss_fn "
                "with it"
            )
        return self

    @field_validator("optimizer_args")
    @classmethod
    def _optimizer_args_type(cls, v: dict | bool) -> dict | bool:
        if v is True:  # the original's default is false; true names no argument
            raise ValueError("got true; expected a dict of optimizer arguments (e.g. {'weight_decay': 1e-5}) or false")
        return v

    @model_validator(mode="after")
    def _optimizer_args(self) -> OptimSection:
        import torch

        if self.optimizer_args:
            args = {k.removeprefix("optimizer__"): v for k, v in self.optimizer_args.items()}
            _check_arguments(getattr(torch.optim, self.optimizer), args, f"optimizer_args of {self.optimizer}",
                             skip={"params", "lr"}, required=False)  # fmt: skip
        return self


class CutoffParams(_Section):
    """The original's ``cutoff_params``: the Gaussian SF cutoff function."""

    cutoff_func: Literal["cosine", "polynomial"] = "cosine"
    gamma: float = Field(2.0, gt=0.0)  # exponent of the polynomial cutoff

    _lowercase = field_validator("cutoff_func", mode="before")(_lower)


FEATURE_MODES = ("stored", "recompute")  # dataset.features


class DatasetSection(_Section):
    section: ClassVar[str] = "dataset"

    raw_data: Any = None
    lmdb_path: str | list[str] | None = None
    cache: Literal["no", "partial", "full"] = "no"
    elements: list[str] | None = None
    fp_scheme: str = "gmpordernorm"  # a registered scheme (amptorch.descriptors.registry)
    # the scheme's settings (the original's MCSHs / Gs mapping, checked by its builder in train/plan.py), or
    # "auto" (the default, also when left out or None): the registry's defaults for the scheme scaled to
    # nn_distance, resolved once the data is read (Plan.resolve_fp_params) and recorded in the saved config
    fp_params: dict[str, Any] | Literal["auto"] | None = "auto"
    # amptorch: the nearest-neighbour distance (Å) that "auto" fp_params are scaled to; measured on the training
    # data (median over atoms, amptorch.descriptors.defaults) when not given. Next to an explicit mapping (a saved
    # config.json of an "auto" run) it is only a record of where that mapping came from.
    nn_distance: float | None = Field(None, gt=0.0)
    cutoff_params: CutoffParams = CutoffParams()
    save_fps: bool = True
    scaling: dict[str, Any] = {"type": "normalize", "range": (0, 1), "elementwise": True}
    val_split: float = Field(0.0, ge=0.0, lt=1.0)
    val_split_mode: Literal["cv", "inorder", "random"] = "cv"
    workers: int | None = Field(None, ge=1)  # amptorch: featurization threads
    fps_dir: str = "processed"  # amptorch: fingerprint cache, relative to run_dir
    # amptorch: "stored" (fingerprints + derivative blocks computed ahead) or "recompute" (geometry only;
    # the descriptor's torch twin computes the features in each training step)
    features: str = "stored"

    _lowercase = field_validator("fp_scheme", "val_split_mode", "features", mode="before")(_lower)

    @field_validator("features")
    @classmethod
    def _features(cls, v: str) -> str:
        if v not in FEATURE_MODES:
            near = difflib.get_close_matches(str(v), FEATURE_MODES, n=1, cutoff=0.3)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"unknown mode{hint}; expected one of {list(FEATURE_MODES)}")
        return v

    @field_validator("fp_params", mode="before")
    @classmethod
    def _fp_params(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.lower() == "auto"):
            return "auto"
        if isinstance(v, str):
            raise ValueError(f"got {v!r}; expected a mapping of the scheme's settings or 'auto'")
        return v

    @field_validator("fp_scheme")
    @classmethod
    def _scheme(cls, v: str) -> str:
        from amptorch.descriptors.registry import by_scheme

        by_scheme(v)  # InputError naming the registered schemes
        return v

    @field_validator("elements")
    @classmethod
    def _elements(cls, v: list[str] | None) -> list[str] | None:
        from ase.data import atomic_numbers

        valid = [s for s in atomic_numbers if s != "X"]
        for symbol in v or []:
            if symbol not in valid:
                near = [s for s in valid if s.lower() == str(symbol).lower()] or difflib.get_close_matches(
                    str(symbol), valid, n=1, cutoff=0.3
                )
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise ValueError(f"unknown element symbol {symbol!r}{hint} (expected symbols such as 'Cu', 'H')")
        if v is not None and len(set(v)) != len(v):
            twice = next(s for s in v if v.count(s) > 1)
            raise ValueError(f"element {twice!r} is given twice; expected each element once")
        return v

    @field_validator("fps_dir")
    @classmethod
    def _fps_dir(cls, v: str) -> str:
        _relative_path(v, "a relative folder inside run_dir")
        return v

    @field_validator("scaling")
    @classmethod
    def _scaling(cls, v: dict) -> dict:
        from amptorch.data.scaling import FeatureScaler

        return FeatureScaler.from_config(v).settings()  # its checks, and its canonical form


class CmdSection(_Section):
    section: ClassVar[str] = "cmd"

    debug: bool = False
    run_dir: str = "./"
    identifier: str | bool = False
    seed: int = 0
    dtype: Any = "float64"
    verbose: bool = True
    logger: bool | str = False  # True or "tensorboard": TensorBoard event files in the run dir
    early_stopping: bool = False
    early_stopping_patience: int = Field(5, ge=1)
    # amptorch: what the keys left out mean (train/recipe.py): "original" (the original AmpTorch's defaults)
    # or "recommended"; when not given, "recommended" if dataset.fp_params is left out or "auto", else "original"
    recipe: Literal["original", "recommended"] = "original"

    _lowercase = field_validator("recipe", mode="before")(_lower)

    @field_validator("identifier")
    @classmethod
    def _identifier(cls, v: str | bool) -> str | bool:
        if isinstance(v, str) and v:
            _relative_path(v, "one folder name (no '/' or '\\', not '..')", single=True)
        return v

    @field_validator("logger", mode="before")
    @classmethod
    def _logger(cls, v: Any) -> bool | str:
        # the original's logger was wandb; we log to TensorBoard only, and say so instead of ignoring it
        if isinstance(v, bool) or v is None:
            return bool(v)
        if str(v).lower() != "tensorboard":
            raise ValueError(f"got {v!r}; expected False, True or 'tensorboard' (wandb is not supported)")
        return "tensorboard"

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> str:
        key = str(v).lower().replace("<class '", "").replace("'>", "")
        if key not in _DTYPES:
            raise ValueError("expected float64 (torch.DoubleTensor, the default) or float32")
        return _DTYPES[key]


class UQSection(_Section):
    """Uncertainty (amptorch; docs/uncertainty.md): an ensemble trained by one call, stored training latents,
    MC-dropout samples (dropout itself is ``model.dropout``)."""

    section: ClassVar[str] = "uq"

    ensemble: int = Field(1, ge=1, le=64)  # members; > 1 trains them all (seeds seed + m) into one checkpoint
    bootstrap: bool = False  # each member on its own bootstrap resample of the training split
    # worker processes training members beside the main one (0: one after another; None: one per spare core)
    ensemble_workers: int | None = Field(None, ge=0)
    latent: bool | dict = False  # True or {k, aggregate, index, max_atoms, layer}: store training latents
    dropout_samples: int = Field(20, ge=2)  # T of MC dropout

    @field_validator("latent")
    @classmethod
    def _latent(cls, v: bool | dict) -> bool | dict:
        if v is False:
            return False
        from amptorch.uq.latent import check_latent_options

        opts = {} if v is True else dict(v)
        allowed = ("k", "aggregate", "index", "max_atoms", "layer")
        for key in opts:
            if key not in allowed:
                hit = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.4)
                raise ValueError(f"unknown key {key!r}{f' (did you mean {hit[0]!r}?)' if hit else ''}; "
                                 f"expected some of {list(allowed)}")  # fmt: skip
        return check_latent_options(**opts)


class Config(_Section):
    model: ModelSection = ModelSection()
    optim: OptimSection = OptimSection()
    dataset: DatasetSection = DatasetSection()
    cmd: CmdSection = CmdSection()
    uq: UQSection = UQSection()

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data: Any) -> Any:
        from amptorch.train.recipe import apply_recipe

        return apply_recipe(data) if isinstance(data, dict) else data

    def to_json(self) -> dict:
        """The fully defaulted config as plain JSON (raw_data summarized, callables named)."""
        out = self.model_dump(exclude={"dataset": {"raw_data"}, "optim": {"loss_fn"}})
        raw = self.dataset.raw_data
        out["dataset"]["raw_data"] = raw if isinstance(raw, (str, list)) and all(
            isinstance(r, str) for r in ([raw] if isinstance(raw, str) else raw)
        ) else (None if raw is None else f"<{len(raw) if hasattr(raw, '__len__') else '?'} structures>")
        out["optim"]["loss_fn"] = None if self.optim.loss_fn is None else _name_of(self.optim.loss_fn)
        return _plain(out)


def _plain(value: Any) -> Any:
    """numpy arrays and scalars (the original's examples pass np.linspace sigmas) as JSON lists and numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return value


SECTIONS = {"model": ModelSection, "optim": OptimSection, "dataset": DatasetSection, "cmd": CmdSection,
            "uq": UQSection}  # fmt: skip


def _nearest(loc: tuple, valid: list[str]) -> str:
    near = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.4)
    if not near:
        return f"; valid keys: {valid}"
    prefix = [*map(str, loc[:-1])]
    key = ALIASES.get(prefix[0] if prefix else "", {}).get(near[0])
    alias = f" (an alias of {'.'.join([*prefix, key])!r})" if key else ""
    return f"; did you mean {'.'.join([*prefix, near[0]])!r}{alias}?"


def _valid_keys(loc: tuple) -> list[str]:
    """The keys valid where ``loc[-1]`` was given (nested sections included)."""
    cls: type[BaseModel] = Config
    for key in loc[:-1]:
        f = cls.model_fields.get(str(key))
        ann = f.annotation if f is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        cls = ann
    aliases = list(ALIASES.get(str(loc[0]), {})) if len(loc) == 2 else []
    return list(cls.model_fields) + aliases


def validate_config(config: dict | Config | None) -> Config:
    """Check the whole config; raise InputError with one line per problem (the first few)."""
    if isinstance(config, Config):
        return config
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise InputError(f"config: got {type(config).__name__}; expected a dict with model/optim/dataset/cmd")
    try:
        return Config.model_validate(config)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-")))
            # a key with a line break or other control character is quoted, so the message stays one line
            path = ".".join(str(x) if str(x).isprintable() else repr(str(x)) for x in loc)
            key = ALIASES.get(str(loc[0]), {}).get(str(loc[-1])) if len(loc) == 2 else None
            cause = (e.get("ctx") or {}).get("error")
            if e["type"] == "extra_forbidden" and key is not None:
                lines.append(f"config {path}: given together with {loc[0]}.{key}, its alias; expected only one")
            elif e["type"] == "extra_forbidden":
                lines.append(f"config {path}: unknown key{_nearest(loc, _valid_keys(loc))}")
            elif isinstance(cause, InputError):  # a lower layer's check, with its own field path
                lines.append(str(cause.within(f"config {path}")))
            else:
                msg = e["msg"].removeprefix("Value error, ")
                got = e.get("input")
                got_s = "" if isinstance(got, dict) else f" (got {got!r})"
                lines.append(f"config {path}: {msg}{got_s[:80]}")
        more = f" (+{len(lines) - 1} more: {'; '.join(lines[1:3])})" if len(lines) > 1 else ""
        raise InputError(lines[0] + more) from None
