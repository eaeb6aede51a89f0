"""The pipeline config: one YAML file, validated on load.

Every section is a pydantic model that forbids unknown keys, so a typo fails
before the run with the key's path and the keys that are allowed there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from tpt.classify.taxonomy import AXES, TaxonomyError, load_taxonomy
from tpt.config_file import load_yaml_config
from tpt.redact import redact

log = logging.getLogger(__name__)


class Section(BaseModel):
    # no infinite or NaN numbers anywhere: none of them can work (a NaN weight, an infinite temperature)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SourceConfig(Section):
    """One input corpus; its weight becomes the Composer stream's proportion or repeat."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # names its folders: mds/<name>/, rejects/<name>/
    path: str  # a local path, a glob, or an fsspec URL (gs://, s3://, https://)
    format: Literal["jsonl", "parquet"] | None = None  # None: from the file extension
    text_field: str = "text"
    id_field: str | None = "id"  # None, or absent in a row: a content hash of source + text
    weight: float = Field(default=1.0, gt=0)
    # the corpus' license as the Hugging Face Hub names it (e.g. cc-by-4.0, odc-by); `tpt publish` puts it on the
    # dataset card, and writes "unknown" for a source without one
    license: str | None = None

    @field_validator("name")
    @classmethod
    def _a_folder_of_its_own(cls, value: str) -> str:
        if value.startswith("."):
            raise ValueError(f"{value!r} cannot name a folder of its own (mds/{value}/): start it with a letter, digit, _ or -")
        return value


class TruncateConfig(Section):
    max_doc_tokens: int = Field(default=2048, gt=0)
    # Larger documents are set aside before tokenizing: tokenizing them costs
    # seconds and gigabytes only to keep their first 2k tokens.
    max_doc_bytes: int = Field(default=8 * 2**20, gt=0)
    batch_size: int = Field(default=256, gt=0)


class OutputConfig(Section):
    dir: str | None = None  # `tpt run --output` overrides it
    parts: int = Field(default=8, gt=0)  # write tasks per source, each writing its own MDS part
    size_limit: int | str = "64mb"  # per MDS shard, before compression
    compression: Literal["zstd", "zstd:9", "zstd:16", "gz", "br", "snappy"] | None = "zstd"
    columns: list[str] | None = None  # metadata columns in the shards; None: all the stages add
    weighting: Literal["proportion", "repeat"] = "proportion"
    remote: str | None = None  # where the output will be uploaded; fills `remote` in streams.yaml

    @field_validator("size_limit")
    @classmethod
    def _size(cls, value: int | str) -> int | str:
        if not 0 < parse_size(value) <= MAX_SHARD_BYTES:
            raise ValueError(f"a shard size must be more than 0 and at most 4GiB (MDS indexes a shard's samples with "
                             f"32-bit offsets); got {value!r}")
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str] | None) -> list[str] | None:
        from tpt.schema import SCALAR_FIELDS

        unknown = sorted(set(value or ()) - set(SCALAR_FIELDS) - {"thinking"})
        if unknown:
            raise ValueError(f"unknown columns {unknown}; allowed: {', '.join((*SCALAR_FIELDS, 'thinking'))}")
        return value


class NormalizeConfig(Section):
    """What two texts may differ by and still be the same text (`dedup.exact`)."""

    nfc: bool = True  # Unicode NFC: composed and decomposed accents are the same character
    whitespace: bool = True  # runs of spaces, tabs and newlines are one space; none at the ends
    lowercase: bool = False  # letter case


class MinHashConfig(Section):
    """Near duplicates (`dedup.near`): MinHash signatures of word n-grams, banded for LSH. The names and defaults are
    datatrove's (`MinhashConfig`) and NeMo Curator's; `num_perm` is datasketch's name for the signature length."""

    n_grams: int = Field(default=5, gt=0)  # words per shingle
    num_buckets: int = Field(default=14, gt=0)  # LSH bands
    hashes_per_bucket: int = Field(default=8, gt=0)  # rows per band
    num_perm: int | None = Field(default=None, gt=0)  # None: num_buckets * hashes_per_bucket, which it must equal
    jaccard_threshold: float = Field(default=0.8, gt=0, le=1)  # a candidate pair is a duplicate at this estimated Jaccard
    seed: int = Field(default=1, ge=0)  # of the permutations: the same on every worker

    @model_validator(mode="after")
    def _bands_cover_the_signature(self) -> MinHashConfig:
        bands = self.num_buckets * self.hashes_per_bucket
        if self.num_perm is not None and self.num_perm != bands:
            raise _invalid([(("num_perm",), f"must equal num_buckets x hashes_per_bucket = {self.num_buckets} x "
                                            f"{self.hashes_per_bucket} = {bands}, got {self.num_perm}")], MinHashConfig)
        return self

    @property
    def permutations(self) -> int:
        return self.num_buckets * self.hashes_per_bucket


class DedupConfig(Section):
    """Documents the teacher would be asked about twice: found on the truncated text, across every source, before
    classify and think (docs/deduplication.md)."""

    exact: bool = True  # the same text after `normalize`
    near: bool = True  # the same text but for a few words (MinHash + LSH, `minhash`)
    duplicates: Literal["drop", "reuse"] = "drop"  # drop: set aside as rejects; reuse: written with the kept one's thinking
    normalize: NormalizeConfig = NormalizeConfig()
    minhash: MinHashConfig = MinHashConfig()

    @property
    def enabled(self) -> bool:
        return self.exact or self.near


# one label, or a list: any of them
Labels = Annotated[list[str], BeforeValidator(lambda value: [value] if isinstance(value, str) else value), Field(min_length=1)]


class BudgetWhen(Section):
    """The classify labels a budget rule matches: every axis named must match."""

    domain: Labels | None = None
    audience: Labels | None = None
    reasoning: Labels | None = None

    def labels(self) -> dict[str, tuple[str, ...]]:
        """Each axis named, with the labels it accepts."""
        return {axis: tuple(labels) for axis, labels in self.model_dump(exclude_none=True).items()}


assert tuple(BudgetWhen.model_fields) == AXES, "BudgetWhen out of sync with the taxonomy's axes"


class BudgetRule(Section):
    """One rule of `generate.budgets`: the documents it matches and the thinking they get (docs/thinking.md)."""

    when: BudgetWhen
    max_new_tokens: int | None = Field(default=None, gt=0)  # None: generate.max_new_tokens
    samples_per_document: int | None = Field(default=None, gt=0)  # None: generate.samples_per_document
    min_confidence: float | None = Field(default=None, ge=0, le=1)  # the score of each axis named must reach it

    @field_validator("when")
    @classmethod
    def _names_an_axis(cls, value: BudgetWhen) -> BudgetWhen:
        if not value.labels():
            raise ValueError(f"names no axis; name at least one of {', '.join(AXES)}")
        return value


class TransformersConfig(Section):
    """The in-process transformers backend."""

    micro_batch_size: int = Field(default=16, gt=0)  # sequences per `model.generate` call
    device: str = "auto"  # "auto": cuda when available
    # torch threads per worker process on the CPU: engines already run one worker per core, and more threads
    # than cores stall generation (seen: 20x slower on a loaded 2-core machine)
    cpu_threads: int = Field(default=1, gt=0)


class OpenAIConfig(Section):
    """The openai backend: any OpenAI-compatible server(s); each request goes to the one with the fewest outstanding."""

    base_urls: list[str] = Field(default=["http://127.0.0.1:8000/v1"], min_length=1)
    # instead of base_urls: a file (path or fsspec URL) of one server URL per line, re-read while the run goes on,
    # for servers that come and go (docs/thinking.md, "Servers that come and go")
    base_urls_file: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable holding the key (never the key itself)
    timeout: float = Field(default=600.0, gt=0)  # seconds per request
    retries: int = Field(default=6, ge=0)

    def __repr_args__(self):
        """Shown (in logs, and engine files such as datatrove's executor.json) without the credentials a URL holds."""
        for name, value in super().__repr_args__():
            yield name, [redact(url) for url in value] if name == "base_urls" else value

    @model_validator(mode="after")
    def _one_server_list(self) -> OpenAIConfig:
        if self.base_urls_file is not None and "base_urls" in self.model_fields_set:
            raise ValueError("base_urls and base_urls_file are both set; keep one: base_urls_file for servers that come and go")
        return self


class StoreConfig(Section):
    """The resumable store OUT/thinking/: every result reaches the OS at once; fsync every N docs or seconds."""

    flush_every_docs: int = Field(default=64, gt=0)
    flush_every_seconds: float = Field(default=30.0, gt=0)


# Keys that sat at the top of `generate` before each backend had its section: still read, with a warning.
MOVED_GENERATE_KEYS = {**dict.fromkeys(TransformersConfig.model_fields, "transformers"),
                       **dict.fromkeys(OpenAIConfig.model_fields, "openai"), **dict.fromkeys(StoreConfig.model_fields, "store")}


class GenerateConfig(Section):
    """Thinking generation: sampling and post-processing for every backend (the paper's Appendix A.1 settings are
    the defaults), then each backend's own section."""

    backend: Literal["transformers", "openai", "vllm"] = "transformers"
    model: str = "embedded"  # transformers/vllm: a local HF directory or "embedded"; openai: the served model name
    prompt: str = "default"  # a packaged template ("default", "random_focus") or a template file path
    chat: bool | None = None  # None: chat if the teacher tokenizer has a chat template, else plain completion
    temperature: float = Field(default=0.6, ge=0)
    top_p: float = Field(default=0.9, gt=0, le=1)
    max_new_tokens: int = Field(default=8192, gt=0)
    stop: list[str] = ["</think>"]
    seed: int = 0
    samples_per_document: int = Field(default=1, gt=0)
    # per-class max_new_tokens / samples_per_document over the classify labels; the first rule a document matches wins
    budgets: list[BudgetRule] = []
    # requests each worker process keeps in flight, on every backend: a continuous-batching server
    # (vLLM's max_num_seqs is 256-1024) needs more than its slots queued to stay full
    max_in_flight: int = Field(default=256, gt=0)
    batch_size: int | None = Field(default=None, gt=0)  # no longer used: the stage streams (see _no_batches)
    # post-processing: the sample is document + separator + thinking
    separator: str = "\n\n"
    flagged: Literal["keep", "flag", "reject"] = "flag"
    repetition_ngram: int = Field(default=8, gt=0)  # words per n-gram in the degenerate-repetition check
    repetition_threshold: float = Field(default=0.5, gt=0, le=1)  # share of repeated n-grams that flags a sample
    transformers: TransformersConfig = TransformersConfig()
    openai: OpenAIConfig = OpenAIConfig()
    store: StoreConfig = StoreConfig()

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        """A key from before the backend sections is read into its section, with a warning naming the new key."""
        if not isinstance(data, dict) or not MOVED_GENERATE_KEYS.keys() & data.keys():
            return data
        data = dict(data)
        for key in MOVED_GENERATE_KEYS.keys() & data.keys():
            section = MOVED_GENERATE_KEYS[key]
            given = data.get(section) or {}
            given = dict(given.model_dump(exclude_unset=True) if isinstance(given, BaseModel) else given)
            if key in given:
                raise ValueError(f"both {key} and {section}.{key} are set; keep {section}.{key}")
            given[key] = data.pop(key)
            data[section] = given
            log.warning("generate.%s is now generate.%s.%s; the old key still works", key, section, key)
        return data

    @field_validator("batch_size")
    @classmethod
    def _no_batches(cls, value: int | None) -> int | None:
        if value is not None:
            log.warning("generate.batch_size no longer applies: the think stage streams, with generate.max_in_flight "
                        "requests in flight per worker; remove the key")
        return value


class SlurmConfig(Section):
    """The Slurm jobs of the datatrove engine (`tpt run --engine datatrove --executor slurm`); the defaults are
    datatrove's Slurm executor's, but for `time`."""

    partition: str
    time: str = "24:00:00"  # per task
    cpus_per_task: int = Field(default=1, gt=0)
    mem_per_cpu_gb: int = Field(default=2, gt=0)
    gpus_per_task: int = Field(default=0, ge=0)  # for the stage tasks (thinking); read and finalize tasks take none
    job_name: str = "tpt"  # prefix of the job names: -read, -stages, -finalize
    qos: str | None = None
    account: str | None = None
    max_array_size: int = Field(default=1001, ge=-1, le=4_000_000)  # the cluster's MaxArraySize; -1: no limit
    env_command: str | None = None  # shell line that activates tpt's environment; None: the venv running `tpt run`
    sbatch_args: dict[str, str] = {}  # any other `#SBATCH --key=value` line ("" for a flag: {hold: ""})

    @field_validator("max_array_size")
    @classmethod
    def _array_size(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be positive, or -1 for no limit")
        return value


class RayConfig(Section):
    """The Ray tasks of the datatrove engine (`tpt run --engine datatrove --executor ray`): what each reserves."""

    cpus_per_task: float = Field(default=1, gt=0)
    mem_per_cpu_gb: float = Field(default=2, gt=0)  # Ray's `memory` resource, per CPU reserved
    gpus_per_task: float = Field(default=0, ge=0)  # for the stage tasks (in-process thinking); read and finalize take none


class DatatroveConfig(Section):
    """The datatrove engine: where its task logs and completion markers live, its Slurm jobs and its Ray tasks."""

    logging_dir: str | None = None  # None: OUT/.datatrove/logs; one folder per run, never shared
    slurm: SlurmConfig | None = None
    ray: RayConfig = RayConfig()


class ClassifierModels(Section):
    """The fastText model of each axis: "starter" (shipped with tpt), a model file, or a folder holding AXIS.ftz/.bin."""

    domain: str = "starter"
    audience: str = "starter"
    reasoning: str = "starter"


class FastTextConfig(Section):
    """Hyper-parameters of `tpt classifiers train` (fastText supervised, one model per axis)."""

    dim: int = Field(default=32, gt=0)
    epoch: int = Field(default=30, gt=0)
    lr: float = Field(default=0.5, gt=0)
    word_ngrams: int = Field(default=2, gt=0)
    min_count: int = Field(default=2, gt=0)
    bucket: int = Field(default=200_000, ge=0)
    loss: Literal["softmax", "ova", "hs"] = "softmax"
    # fastText >= 0.9.3 leaves part of its input matrix uninitialised below 11 threads (docs/classification.md)
    threads: int = Field(default=11, ge=11)
    validation: float = Field(default=0.2, ge=0, lt=1)  # share of labelled documents held out, by id hash
    seed: int = 0
    quantize: bool = True  # write a small .ftz (models with fewer than 256 vectors stay .bin)
    cutoff: int = Field(default=10_000, gt=0)  # vectors kept by quantisation


class ClassifyConfig(Section):
    """Domain / audience / reasoning-intensity labels on every document (docs/classification.md)."""

    taxonomy: str = "default"  # the packaged taxonomy.yaml, or a path
    models: ClassifierModels = ClassifierModels()
    batch_size: int = Field(default=512, gt=0)
    label_max_chars: int = Field(default=3000, gt=0)  # document characters shown to the LLM labeller
    label_max_new_tokens: int = Field(default=96, gt=0)  # room for the JSON answer (generate.max_new_tokens is for thinking)
    fasttext: FastTextConfig = FastTextConfig()


class PipelineConfig(Section):
    sources: list[SourceConfig] = Field(min_length=1)
    tokenizer: str = "embedded"  # a local HF tokenizer directory or tokenizer.json, or "embedded"
    truncate: TruncateConfig = TruncateConfig()
    output: OutputConfig = OutputConfig()
    dedup: DedupConfig = DedupConfig()
    datatrove: DatatroveConfig = DatatroveConfig()
    generate: GenerateConfig | None = None  # None: no thinking is generated
    classify: ClassifyConfig | None = None  # None: no classification

    @model_validator(mode="after")
    def _unique_sources(self) -> PipelineConfig:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicates)}")
        folded = [n.casefold() for n in names]
        alike = sorted(n for n in names if folded.count(n.casefold()) > 1)
        if alike:  # one folder on a case-insensitive filesystem (macOS, Windows)
            raise ValueError(f"source names must differ in more than case; these differ only in case: {', '.join(alike)}")
        return self

    @model_validator(mode="after")
    def _budgets_name_known_labels(self) -> PipelineConfig:
        """Budget rules match classify labels, so each label they name must be in `classify.taxonomy`."""
        budgets = self.generate.budgets if self.generate else []
        if not budgets:
            return self
        if self.classify is None:
            raise _invalid([(("generate", "budgets"), "rules over the classify labels need a `classify` section")])
        try:
            taxonomy = load_taxonomy(self.classify.taxonomy)
        except TaxonomyError as error:
            raise _invalid([(("classify", "taxonomy"), str(error))]) from None
        problems = []
        for index, rule in enumerate(budgets):
            for axis, labels in rule.when.labels().items():
                for label in labels:
                    try:
                        taxonomy[axis].check(label)
                    except TaxonomyError as error:
                        problems.append((("generate", "budgets", index, "when", axis), str(error)))
        if problems:
            raise _invalid(problems)
        return self

    def with_output_dir(self, out_dir: str | None) -> PipelineConfig:
        if out_dir is None:
            return self
        return self.model_copy(update={"output": self.output.model_copy(update={"dir": out_dir})})


def _invalid(problems: list[tuple[tuple[str | int, ...], str]], model: type[BaseModel] | None = None) -> ValidationError:
    """A check across keys as pydantic errors at the keys it names, so `describe_error` shows their paths."""
    return ValidationError.from_exception_data((model or PipelineConfig).__name__, [
        InitErrorDetails(type=PydanticCustomError("config", "{problem}", {"problem": problem}), loc=loc, input=None)
        for loc, problem in problems])


MAX_SHARD_BYTES = 2**32
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
          "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


def parse_size(value: int | str) -> int:
    """Bytes in `value`: an int, or a string such as "64mb" or "1GiB"."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (expected e.g. 67108864, '64mb', '1GiB')")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> PipelineConfig:
    """A pipeline config; its relative paths resolve against the file (`resolve_paths`)."""
    return load_yaml_config(path, PipelineConfig, overrides, resolve=resolve_paths)


def resolve_paths(raw: dict[str, Any], config_file: Path) -> None:
    """Make the relative paths of a raw config absolute, in place: one rule, relative to the config file's folder.

    A key that takes a name or a path (`tokenizer: embedded`, `prompt: default`) keeps its names. A path found
    only in the current folder, as output.dir and the model paths were read before, is kept, with a warning.
    """
    base = config_file.parent
    for source in raw.get("sources") or ():
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            source["path"] = _beside(source["path"], base)
    generate = raw.get("generate") if isinstance(raw.get("generate"), dict) else {}
    keys = [("output", "dir"), ("datatrove", "logging_dir"), ("tokenizer",), ("generate", "prompt"),
            ("classify", "taxonomy"), *(("classify", "models", axis) for axis in AXES)]
    if generate.get("backend", "transformers") != "openai":  # the openai backend's model is the served model's name
        keys.append(("generate", "model"))
    for key in keys:
        *sections, name = key
        node = raw
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        value = node.get(name) if isinstance(node, dict) else None
        if isinstance(value, str) and value not in _names_of(key):
            node[name] = _beside(value, base, key=".".join(key), config_file=config_file)


# keys that take a name or a path, and their names
PATH_NAMES = {("tokenizer",): {"embedded"}, ("generate", "model"): {"embedded"}, ("classify", "taxonomy"): {"default"},
              **{("classify", "models", axis): {"starter"} for axis in AXES}}


def _names_of(key: tuple[str, ...]) -> set[str]:
    if key == ("generate", "prompt"):
        from tpt.generate.prompts import packaged_templates

        return set(packaged_templates())
    return PATH_NAMES.get(key, set())


def _beside(location: str, base: Path, key: str | None = None, config_file: Path | None = None) -> str:
    """`location` made absolute against `base`: kept if a URL or absolute. With `key`, a path that exists only
    relative to the current folder is kept there, with a warning."""
    if "://" in location or Path(location).expanduser().is_absolute():
        return location
    beside = (base / location).resolve()
    if key and not beside.exists() and Path(location).exists():
        here = Path(location).resolve()
        log.warning("%s: %s: %s is not beside the config file but in the current folder; paths in a config are "
                    "relative to the config file: write %s (the one in the current folder is read this time)",
                    config_file, key, location, here)
        return str(here)
    return str(beside)


