"""Checks a model name and pretrained tag before any work, with the closest valid names when one is mistyped.

`--model ViT-B-33` says "did you mean ViT-B-32?" instead of listing architectures alphabetically; a wrong tag lists
the model's tags, closest first. Called by load_clip and by the config loader, so a typo in a run config stops the
run before the download, not hours later at scoring.
"""

from __future__ import annotations

import os
from typing import Optional

from curate.suggest import closest

TEST_MODEL = "tiny-test"
HF_HUB_PREFIX = "hf-hub:"


def check_model_name(model: str, pretrained: Optional[str] = None, checkpoint: Optional[str] = None) -> None:
    """ValueError naming the closest architectures / tags when `model` or `pretrained` is not one open_clip knows."""
    import open_clip

    if model == TEST_MODEL or model.startswith(HF_HUB_PREFIX):
        return
    known = open_clip.list_models()
    if model not in known:
        guesses = closest(model, known + [TEST_MODEL])
        hint = _hint(guesses)
        raise ValueError(f"unknown open_clip architecture {model!r}; {hint}"
                         f"`python -c \"import open_clip; print(open_clip.list_models())\"` lists all {len(known)}; "
                         f"also accepted: hf-hub:org/repo, or {TEST_MODEL} (tests)")
    if pretrained and not checkpoint and not os.path.isfile(pretrained) \
            and not open_clip.get_pretrained_cfg(model, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(model)
        guesses = closest(pretrained, tags)
        ordered = guesses + [t for t in tags if t not in guesses]
        hint = _hint(guesses)
        raise ValueError(f"unknown pretrained tag {pretrained!r} for {model}; {hint}"
                         f"its tags: {', '.join(ordered) or 'none (pass --checkpoint PATH)'}")


def _hint(guesses: list[str]) -> str:
    if not guesses:
        return ""
    also = f" (also close: {', '.join(guesses[1:])})" if len(guesses) > 1 else ""
    return f"did you mean {guesses[0]}?{also} "
