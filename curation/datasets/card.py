"""The dataset card (DATASET.md): what a frozen dataset holds, where it came from, and what it may be used for."""

from __future__ import annotations

from dataclasses import dataclass, field

from curation.datasets.format import FORMAT

RIGHTS_SCRAPED = (
    "Images from public social-media posts remain the work of their authors, who hold the copyright and the "
    "rights in their likeness. This dataset does not license them to anyone. It was assembled for research on "
    "generative models; whoever uses it is responsible for a lawful basis to do so where they are."
)
RIGHTS_LOCAL = (
    "Images were supplied by the person who built this dataset, who is responsible for having the right to use "
    "them and the consent of the people shown."
)
INTENDED_USE = (
    "Training and evaluating generative image models (StyleGAN2-ADA) for research and art, and studying "
    "small-data training."
)
OUT_OF_SCOPE = (
    "Identifying, tracking or profiling the people shown; face recognition; generating images meant to pass as "
    "a real, identifiable person; any use the image authors or the people shown have not agreed to where "
    "consent is required; redistribution of the images themselves."
)


@dataclass
class CardFacts:
    """What a dataset card says; `render_card` turns it into DATASET.md."""

    title: str
    date: str
    count: int
    resolution: int
    mode: str
    class_names: list[str] | None = None
    sources: dict[str, int] = field(default_factory=dict)  # source kind -> images
    tags: dict[str, int] = field(default_factory=dict)  # query tag -> images
    owners: int = 0  # distinct accounts (not named: the card travels further than the catalog)
    photos: int = 0  # distinct source photos
    manual: int = 0  # faces cropped by hand in review
    selection: list[str] = field(default_factory=list)  # the rules that chose the images
    history: list[str] = field(default_factory=list)  # parent version, removals
    people: int | None = None  # distinct people among the faces (None: faces not grouped into people)
    largest_person_share: float = 0.0  # the largest person's share of the images
    largest_owner_share: float = 0.0  # the largest account's share of the images
    caps: dict[str, float] | None = (
        None  # the shares the freeze warned above (max_person_share, max_owner_share)
    )
    removal: str = "Ask the maintainer of this dataset, naming the account, the post URL or the image."


def render_card(f: CardFacts) -> str:
    scraped = any(k != "local" for k in f.sources)
    lines = [
        f"# {f.title}",
        "",
        f"- Format: {FORMAT} (StyleGAN2-ADA image folder zip)",
        f"- Date: {f.date}",
        f"- Images: {f.count}" + (f" faces from {f.photos} photos" if f.photos else ""),
        f"- Resolution: {f.resolution} x {f.resolution} px, {f.mode}",
        "- Labels: "
        + (", ".join(f"{i} = {n}" for i, n in enumerate(f.class_names)) if f.class_names else "none"),
    ]
    if f.manual:
        lines.append(f"- Hand-cropped faces: {f.manual}")
    lines += ["", "## Sources", ""]
    lines += [f"- {kind}: {n} images" for kind, n in sorted(f.sources.items())] or ["- (not recorded)"]
    if f.tags:
        lines.append("- Tags: " + ", ".join(f"#{t} ({n})" for t, n in sorted(f.tags.items())))
    if f.owners:
        lines.append(f"- Accounts: {f.owners} distinct (listed per image in provenance.jsonl)")
    lines += ["", "## People", ""]
    if f.people is None:
        lines.append("- not grouped into people (run `ghosts analyze`, which describes and groups the faces)")
    else:
        lines.append(f"- People: {f.people} (faces grouped by dlib face descriptors: evidence, not proof)")
        lines.append(f"- Largest person: {100 * f.largest_person_share:.1f}% of the images")
    lines.append(f"- Largest account: {100 * f.largest_owner_share:.1f}% of the images")
    caps = {k: v for k, v in (f.caps or {}).items() if v is not None}
    lines.append(
        "- Cap used: "
        + (
            ", ".join(f"{k.replace('_', ' ')} {100 * v:.1f}%" for k, v in sorted(caps.items()))
            if caps
            else "none"
        )
    )
    if f.selection:
        lines += ["", "## Selection", ""] + [f"- {rule}" for rule in f.selection]
    if f.history:
        lines += ["", "## History", ""] + [f"- {h}" for h in f.history]
    lines += [
        "",
        "## Rights",
        "",
        RIGHTS_SCRAPED if scraped else RIGHTS_LOCAL,
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Out of scope",
        "",
        OUT_OF_SCOPE,
        "",
        "## Removal",
        "",
        "Anyone shown in, or holding rights to, an image here can ask for its removal. " + f.removal,
        "Removed images are excluded from every later version, and a new version is published without them.",
        "",
        "## Files",
        "",
        "- `NNNNN/imgNNNNNNNN.png`: the images, in the order of provenance.jsonl",
        "- `dataset.json`: class labels for StyleGAN2-ADA (`null` when unlabelled)",
        (
            "- `provenance.jsonl`: one JSON line per image: source, post or file, face landmarks and crop, quality, "
            "review decision, and the sha256 of the PNG"
        ),
        "",
    ]
    return "\n".join(lines)
