"""The model table: the one list of SAM 2 / SAM 2.1 models this plugin knows.

Everything that needs model names (parameter validation, the Studio widget, the README) reads
:data:`MODELS`. Each entry maps a ``model_name`` to the Hydra config shipped inside the ``sam2``
package, the official checkpoint URL, its size in bytes and its SHA-256.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

_BASE_2_0 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_BASE_2_1 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable SAM 2 model.

    Attributes:
        name: the ``model_name`` parameter value, e.g. ``"sam2.1_hiera_tiny"``.
        config: path of the Hydra config inside the ``sam2`` package.
        url: official checkpoint URL (Meta's CDN).
        size: checkpoint size in bytes.
        sha256: hex SHA-256 of the checkpoint file.
        params_m: encoder + decoder parameters, in millions (from Meta's model card).
    """

    name: str
    config: str
    url: str
    size: int
    sha256: str
    params_m: float

    @property
    def filename(self) -> str:
        """File name of the checkpoint in ``weights/`` (the URL's last component)."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def description(self) -> str:
        """One line for tooltips and the README."""
        family = "SAM 2.1" if self.name.startswith("sam2.1") else "SAM 2"
        encoder = self.name.split("hiera_", 1)[1].replace("_", " ")
        return (f"{family}, Hiera-{encoder} encoder, {self.params_m} M parameters, "
                f"{self.size / 1e6:.0f} MB download")


def _spec(name: str, config: str, base: str, size: int, sha256: str, params_m: float) -> ModelSpec:
    return ModelSpec(name, config, f"{base}{name}.pt", size, sha256, params_m)


MODELS: Dict[str, ModelSpec] = {m.name: m for m in (
    _spec("sam2_hiera_tiny", "configs/sam2/sam2_hiera_t.yaml", _BASE_2_0, 155906050,
          "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125", 38.9),
    _spec("sam2_hiera_small", "configs/sam2/sam2_hiera_s.yaml", _BASE_2_0, 184309650,
          "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3", 46.0),
    _spec("sam2_hiera_base_plus", "configs/sam2/sam2_hiera_b+.yaml", _BASE_2_0, 323493298,
          "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071", 80.8),
    _spec("sam2_hiera_large", "configs/sam2/sam2_hiera_l.yaml", _BASE_2_0, 897952466,
          "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b", 224.4),
    _spec("sam2.1_hiera_tiny", "configs/sam2.1/sam2.1_hiera_t.yaml", _BASE_2_1, 156008466,
          "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69", 38.9),
    _spec("sam2.1_hiera_small", "configs/sam2.1/sam2.1_hiera_s.yaml", _BASE_2_1, 184416285,
          "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38", 46.0),
    _spec("sam2.1_hiera_base_plus", "configs/sam2.1/sam2.1_hiera_b+.yaml", _BASE_2_1, 323606802,
          "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5", 80.8),
    _spec("sam2.1_hiera_large", "configs/sam2.1/sam2.1_hiera_l.yaml", _BASE_2_1, 898083611,
          "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318", 224.4),
)}

DEFAULT_MODEL = "sam2_hiera_small"


def get_model_spec(name: str) -> ModelSpec:
    """Return the table entry for ``name``; an unknown name raises ``ValueError`` listing them all."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"model_name: unknown model {name!r}; expected one of "
                         f"{', '.join(MODELS)}") from None


def model_names() -> Tuple[str, ...]:
    """All model names, in table order (SAM 2 first, then SAM 2.1, small to large)."""
    return tuple(MODELS)
