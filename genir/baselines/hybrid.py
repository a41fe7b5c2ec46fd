"""``hybrid``: any index fused with Lucene BM25, and the one home of score fusion.

As pyserini's ``HybridSearcher`` composes two searchers, a hybrid index composes two genir
indexes of one collection: a first component of any method but a hybrid (``of``, e.g. ``dense``,
``dsi``, ``seal``) and BM25 with its defaults. A query asks each for its ``max(k, depth)`` best
documents and fuses the two lists (:func:`fuse`):

* ``fusion=interp``: each list's scores are min-max normalized to ``[0, 1]`` within that query's
  list (a list whose scores are all equal scores 1), and a document scores
  ``weight * first(d) + (1 - weight) * bm25(d)``, 0 for a list that does not hold it;
* ``fusion=rrf``: reciprocal-rank fusion, ``sum over lists of 1 / (rrf_k + rank)`` (no weight).

Ties in the fused score are broken by docid, so a ranking is reproducible.

The weight (``interp``) is fixed when the index is built, never on test queries: a number in
``[0, 1]`` is used as given; ``auto`` is chosen on the dev queries that
:func:`genir.indexer.dev_split.split_dev` carves from ``queries_split`` (the carve a trained
first component holds out of its training, so it never saw them; one that trained on them, such
as SEAL on every query of its split, gets ``trained_weight``, and is refused ``auto`` without one):
both components search them at ``depth``, every weight 0.00, 0.05, ..., 1.00 is scored by nDCG@10,
and the best is kept (ties: the one nearest 0.5, then the smaller). A collection without qrels for
``queries_split`` (zero-shot) gets ``zero_shot_weight`` (0.5: both count alike; a method's hybrid may
give one chosen on other collections' queries, as ``seal-hybrid`` does). The build statistics record
the weight, where it came from (``weight_source``: ``dev``, ``given``, ``default (no dev queries)``,
``trained_weight (the first component trained on the dev queries)`` or ``unused (fusion=rrf)``), and
for ``dev`` its nDCG@10, the whole weight -> nDCG@10 curve and the number of dev queries.

Index directory: the first component's files in ``first/`` and a BM25 index in ``bm25/``, each
exactly as that method writes them, covered by the hybrid's one manifest (no manifest of their
own: an index directory holds one). The manifest's ``stats["components"]`` maps each folder to
its method, config and build statistics (``{"method", "config", "stats"}``, plus ``copied_from``
for a first component copied from an existing index with ``of_from``). Adding or deleting
documents changes both components in one new version of the hybrid (where the first component's
method can change at all).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import torch
from pydantic import Field

from genir.baselines.bm25 import BM25Config, BM25Searcher
from genir.devices import resolve_device
from genir.errors import CorruptIndexError, GenirError
from genir.indexer.artifact import Manifest, index_file, read_manifest
from genir.indexer.collection import Collection, Document, Qrels
from genir.indexer.dev_split import DEFAULT_DEV_FRACTION, DevFraction, QuerySplit, split_dev
from genir.measures import evaluate
from genir.retrieval.searcher import Addition, Deletion, Forget, Hit, Opening, Searcher, searcher_class
from genir.settings import AUTO, Auto, Seed, Settings, parse_config

FIRST_DIR, BM25_DIR = "first", "bm25"
WEIGHT_GRID = tuple(round(0.05 * i, 2) for i in range(21))  # 0.00, 0.05, ..., 1.00
DEV_MEASURE = "nDCG@10"


Fusion = Literal["interp", "rrf"]
FUSIONS = get_args(Fusion)
Of = Annotated[str, Field(description="the first component's method (any registered method but a hybrid)")]
Share = Annotated[float, Field(ge=0, le=1)]
Weight = Annotated[Auto | Share, Field(
    description="the first component's share under interp, or auto (chosen on dev at build; module docstring)")]
ZeroShotWeight = Annotated[Share, Field(description="weight=auto without dev queries (no qrels for queries_split): the first "
                                                    "component's share")]
TrainedWeight = Annotated[Share | None, Field(description=(
    "weight=auto when the first component trained on the dev queries: its share (none: refused, give the weight)"))]


class HybridConfig(Settings):
    of: Of = "dsi"
    of_from: str = Field("", description="an index of the same collection and method `of`, copied instead of building one")
    of_set: str = Field("", description="the first component's options when it is built: KEY=VALUE;KEY=VALUE")
    fusion: Fusion = Field("interp", description="interp: min-max normalized scores, weighted; rrf: reciprocal-rank fusion")
    weight: Weight = AUTO
    zero_shot_weight: ZeroShotWeight = 0.5  # no dev queries to choose on: both components count alike
    trained_weight: TrainedWeight = None
    depth: int = Field(100, ge=1, description="documents each component contributes")
    rrf_k: int = Field(60, ge=0, description="rrf's constant: a document at rank r adds 1 / (rrf_k + r)")
    queries_split: str = Field("train", description="the split whose dev carve chooses weight=auto")
    dev_fraction: DevFraction = DEFAULT_DEV_FRACTION
    seed: Seed = 0

    @property
    def given_weight(self) -> float | None:
        """``weight`` as a share in ``[0, 1]``, or None for ``auto`` (the build's choice)."""
        return None if self.weight == AUTO else self.weight


def fuse(runs: Sequence[list[Hit]], weights: Sequence[float], fusion: str, rrf_k: int = 60) -> list[Hit]:
    """One query's fused ranking of several methods' hit lists (module docstring), best first.

    Args:
        runs: each method's hits for the query, best first (a list may be empty).
        weights: each run's share under ``interp``; ``rrf`` ignores them.
    Raises:
        GenirError: an unknown fusion.
    """
    if fusion not in FUSIONS:
        raise GenirError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    fused: dict[str, float] = {}
    for hits, weight in zip(runs, weights):
        if not hits:
            continue
        if fusion == "rrf":
            contributions = [1.0 / (rrf_k + rank) for rank in range(1, len(hits) + 1)]
        else:
            top, bottom = hits[0].score, min(h.score for h in hits)
            spread = top - bottom
            contributions = [weight * ((h.score - bottom) / spread if spread > 0 else 1.0) for h in hits]
        for hit, value in zip(hits, contributions):
            fused[hit.docid] = fused.get(hit.docid, 0.0) + value
    ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return [Hit(docid, score) for docid, score in ranked]


class HybridSearcher(Searcher):
    method = "hybrid"
    Config = HybridConfig
    description = "any index (of=METHOD) + BM25, fused by normalized score interpolation (weight chosen on dev) or RRF"
    search_settings = ("fusion", "weight", "depth", "rrf_k")

    def __init__(self, opening: Opening):
        manifest = opening.manifest
        components = manifest.stats.get("components")
        if not (isinstance(components, dict) and {FIRST_DIR, BM25_DIR} <= components.keys() and "weight" in manifest.stats):
            # seal-hybrid indexes before the hybrid method were a seal index with bm25/ beside it
            raise CorruptIndexError(f"{opening.directory}: a {manifest.method} index of an older layout (no components in its "
                                    "manifest); build it again")
        super().__init__(opening)
        config = self.config
        given = config.given_weight  # a search setting may give one; auto: the build's
        weight = manifest.stats["weight"] if given is None else given
        if config.fusion == "interp" and weight is None:
            raise GenirError("this hybrid index was built with fusion=rrf: give weight=SHARE to search it with interp")
        self.first, self.bm25 = _open_components(opening.directory, components, manifest.files, opening.device)
        self.weights = (1.0, 1.0) if config.fusion == "rrf" else (weight, 1.0 - weight)  # rrf weighs nothing

    @classmethod
    def build(cls, collection: Collection, config: HybridConfig, directory: Path, previous: Path | None) -> dict[str, Any]:
        # Every option is checked before the first component, which may take hours, is built. ``previous``
        # is not read: a rebuild builds the first component again, and of_from reuses a built one.
        given = config.given_weight
        first_cls = _first_component_class(config.of)
        if config.of_from and config.of_set:
            raise GenirError("of_set applies when the first component is built; with of_from it is copied as it is "
                             "(give one of them)")
        (directory / FIRST_DIR).mkdir()
        if config.of_from:
            first = _copy_index(Path(config.of_from), config.of, collection, directory / FIRST_DIR)
        else:
            first_config = _parse_of_set(first_cls, config.of_set)
            first = {"method": config.of, "config": first_config.model_dump(mode="json")}
        dev = _dev_split(collection, config) if config.fusion == "interp" and given is None else None
        trained_on_dev = dev is not None and not _held_out(first["config"], config)
        if trained_on_dev and config.trained_weight is None:
            raise _trained_on_dev(first["config"], config)
        if not config.of_from:
            first["stats"] = first_cls.build(collection, first_config, directory / FIRST_DIR, None)
        (directory / BM25_DIR).mkdir()
        bm25 = {"method": "bm25", "config": BM25Config().model_dump(mode="json"),
                "stats": BM25Searcher.build(collection, BM25Config(), directory / BM25_DIR, None)}
        components = {FIRST_DIR: first, BM25_DIR: bm25}
        stats: dict[str, Any] = {"num_docs": first["stats"]["num_docs"], "components": components}
        if config.fusion == "rrf":
            return {**stats, "weight": None, "weight_source": "unused (fusion=rrf)"}
        if given is not None:
            return {**stats, "weight": given, "weight_source": "given"}
        if trained_on_dev:
            return {**stats, "weight": config.trained_weight,
                    "weight_source": "trained_weight (the first component trained on the dev queries)"}
        if dev is None:
            return {**stats, "weight": config.zero_shot_weight, "weight_source": "default (no dev queries)"}
        return {**stats, **_choose_weight(directory, components, dev.dev_queries(collection), dev.dev, config.depth)}

    def write_files(self, directory: Path) -> None:
        for name, component in ((FIRST_DIR, self.first), (BM25_DIR, self.bm25)):
            (directory / name).mkdir()
            component.write_files(directory / name)

    @property
    def num_docs(self) -> int:
        return self.first.num_docs

    def to(self, device: str | torch.device | None) -> HybridSearcher:
        """The first component's models move; BM25 has none."""
        self.first.to(device)
        return self

    def close(self) -> None:
        self.first.close()
        self.bm25.close()

    def doc_text(self, docid: str) -> str | None:
        return self.bm25.doc_text(docid) or self.first.doc_text(docid)

    def parts(self) -> tuple[Searcher, ...]:
        return (self.first, self.bm25)

    def _batch_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        depth = max(k, self.config.depth)
        pairs = zip(self.first.batch_search(queries, depth), self.bm25.batch_search(queries, depth))
        return [fuse(pair, self.weights, self.config.fusion, self.config.rrf_k)[:k] for pair in pairs]

    # -- growing and shrinking: both components change in one new version ------------------
    def _present(self, ids: Sequence[str]) -> set[str]:
        present = self.first._present(ids)
        if self.bm25._present(ids) != present:
            raise CorruptIndexError(f"{self.directory}: its {self.first.method} and BM25 components hold different "
                                    "documents; build it again")
        return present

    def check_row_fit(self, needs_pairs: bool) -> None:
        """Its first component's rows are fitted (BM25 has none)."""
        self.first.check_row_fit(needs_pairs)

    def _write_added(self, docs: list[Document], staging: Path, addition: Addition) -> dict[str, Any]:
        return self._write_components(staging, lambda component, folder: component._write_added(docs, folder, addition))

    def _write_deleted(self, ids: list[str], staging: Path, deletion: Deletion) -> dict[str, Any]:
        return self._write_components(staging, lambda component, folder: component._write_deleted(ids, folder, deletion))

    def forget_modes(self) -> tuple[Forget, ...]:
        """Those both components can delete with."""
        return tuple(mode for mode in self.first.forget_modes() if mode in self.bm25.forget_modes())

    def _write_components(self, staging: Path, write: Callable[[Searcher, Path], dict[str, Any]]) -> dict[str, Any]:
        """Each component's new version in its folder of ``staging``; its changed statistics in its record."""
        components = {}
        for name, component in ((FIRST_DIR, self.first), (BM25_DIR, self.bm25)):
            (staging / name).mkdir()
            record = self.manifest.stats["components"][name]
            components[name] = {**record, "stats": {**record["stats"], **write(component, staging / name)}}
        return {"num_docs": components[FIRST_DIR]["stats"]["num_docs"], "components": components}


def _first_component_class(of: str) -> type[Searcher]:
    try:
        cls = searcher_class(of)
    except GenirError as e:
        raise GenirError(f"of={of!r}: {e}") from None
    if issubclass(cls, HybridSearcher):
        raise GenirError(f"of={of!r}: the first component of a hybrid must be a method other than a hybrid "
                         "(BM25 is already its second)")
    return cls


def _parse_of_set(cls: type[Searcher], of_set: str) -> Any:
    """The first component's config from ``KEY=VALUE;KEY=VALUE`` (its method's defaults for the rest)."""
    try:
        return parse_config(cls.Config, [item for item in of_set.split(";") if item.strip()])
    except GenirError as e:
        raise GenirError(f"of_set={of_set!r}: {e}") from None


def _copy_index(source: Path, of: str, collection: Collection, target: Path) -> dict[str, Any]:
    """Copy the files of the ``of`` index at ``source`` (of ``collection``'s corpus) into ``target``;
    returns its component record.

    Raises:
        GenirError: ``source`` is not a complete genir index, is of another method, or was built
            from another corpus (or changed since by add/delete).
    """
    try:
        manifest = read_manifest(source, verify=True)
    except GenirError as e:
        raise GenirError(f"of_from={source}: {e}") from None
    if manifest.method != of:
        raise GenirError(f"of_from={source}: a {manifest.method} index, not {of} (of={of})")
    if manifest.collection.get("sha256") != collection.fingerprint:
        raise GenirError(f"of_from={source}: built from another corpus than {collection.corpus_path} "
                         "(or changed since by add/delete)")
    for name in manifest.files:
        copy = target / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(index_file(source, name), copy)
    return {"method": of, "config": manifest.config, "stats": manifest.stats, "copied_from": str(source.resolve())}


def _dev_split(collection: Collection, config: HybridConfig) -> QuerySplit | None:
    """The dev queries that choose ``weight=auto``, or None without any (no qrels for ``queries_split``)."""
    if not config.queries_split or config.queries_split not in collection.splits():
        return None
    split = split_dev(collection, config.queries_split, config.dev_fraction, config.seed)
    return split if split.dev else None


def _first_held(first_config: dict[str, Any]) -> dict[str, Any]:
    """The dev carve (``dev_fraction``, ``seed``) the first component held out of its ``queries_split``."""
    return {"dev_fraction": first_config.get("dev_fraction") if first_config.get("select_on_dev", True) else 0.0,
            "seed": first_config.get("seed")}


def _held_out(first_config: dict[str, Any], config: HybridConfig) -> bool:
    """Whether the first component never trained on the hybrid's dev queries.

    A method that trains on ``queries_split`` (its config names it) holds out the hybrid's dev
    queries only when it carved them as :func:`~genir.indexer.dev_split.split_dev` does with the
    same ``dev_fraction`` and ``seed`` (DSI, unless ``select_on_dev=false``); one without
    ``dev_fraction`` (SEAL) trained on every query.
    """
    return (first_config.get("queries_split") != config.queries_split
            or _first_held(first_config) == {"dev_fraction": config.dev_fraction, "seed": config.seed})


def _trained_on_dev(first_config: dict[str, Any], config: HybridConfig) -> GenirError:
    """The refusal to choose the weight on queries the first component trained on."""
    held = _first_held(first_config)
    return GenirError(f"weight={AUTO}: the first component ({config.of}) trained on split {config.queries_split!r} "
                      f"holding out dev_fraction={held['dev_fraction']}, seed={held['seed']}, not the hybrid's "
                      f"dev_fraction={config.dev_fraction}, seed={config.seed}: the weight would be chosen on queries it "
                      "trained on; set the same dev_fraction and seed, or give the weight (or trained_weight)")


def _open_components(directory: Path, components: dict[str, Any], files: dict[str, dict[str, Any]],
                     device: torch.device) -> tuple[Searcher, Searcher]:
    """The first component and BM25, opened from their folders of ``directory`` with their built
    settings, their models on ``device``.

    Args:
        files: the hybrid's files (manifest entries by path); each component is given those of
            its folder, relative to it, as its own manifest would list them.
    """
    opened = []
    for name in (FIRST_DIR, BM25_DIR):
        record, prefix = components[name], f"{name}/"
        own = {path[len(prefix):]: entry for path, entry in files.items() if path.startswith(prefix)}
        manifest = Manifest(method=record["method"], config=record["config"], stats=record["stats"], files=own)
        opened.append(searcher_class(record["method"])(Opening(directory / name, manifest, device=device)))
    return opened[0], opened[1]


def _choose_weight(directory: Path, components: dict[str, Any], queries: dict[str, str], qrels: Qrels,
                   depth: int) -> dict[str, Any]:
    """The weight of :data:`WEIGHT_GRID` with the best dev nDCG@10 (ties: nearest 0.5), and the curve."""
    # The hybrid's manifest is written after the build; until then its files are those on disk (not yet hashed).
    written = {path.relative_to(directory).as_posix(): {} for path in directory.rglob("*") if path.is_file()}
    first, bm25 = _open_components(directory, components, written, resolve_device(None))  # the build's device
    try:
        texts = list(queries.values())
        hits = list(zip(first.batch_search(texts, depth), bm25.batch_search(texts, depth)))
    finally:
        first.close()
        bm25.close()
    curve = {}
    for weight in WEIGHT_GRID:
        run = {qid: fuse(pair, (weight, 1.0 - weight), "interp") for qid, pair in zip(queries, hits)}
        curve[weight] = evaluate(run, qrels, (DEV_MEASURE,)).aggregate[DEV_MEASURE]
    best = min(WEIGHT_GRID, key=lambda w: (-curve[w], abs(w - 0.5), w))
    return {"weight": best, "weight_source": "dev", "dev_ndcg10": curve[best],
            "dev_curve": {f"{w:.2f}": round(v, 6) for w, v in curve.items()}, "dev_queries": len(queries)}
