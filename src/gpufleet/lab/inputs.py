"""What the lab bundle (bundles/lab.yml) carries that is made here, made once, in one call:
``gpufleet lab bundle-inputs`` (make lab-bundle, make demo, make test and the airgap scenario run it
before ``gpufleet bundle build bundles/lab.yml``).

- the lab engine's wheel (``engine_wheel``: llama-cpp-python, compiled once into .cache/wheels);
- the lab's tiny model, version 1, and a second version of the same shape (another seed) for
  rollouts (``tiny_model``: .cache/models/tiny-llama and .cache/models/tiny-llama-2);
- the lab's tiny container image (``tiny_image``).

Each step is a no-op when its output is already right.
"""

from __future__ import annotations

from pathlib import Path

from gpufleet.lab import engine_wheel, tiny_image, tiny_model

# The lab model's versions, as bundles/lab.yml lists them: directory under the root -> seed.
MODELS = {
    ".cache/models/tiny-llama": tiny_model.SEED,
    ".cache/models/tiny-llama-2": tiny_model.SEED + 1,
}


def prepare(root: str | Path = ".", say=print) -> None:
    root = Path(root)
    r = engine_wheel.ensure(root / engine_wheel.DEFAULT_DEST)
    state = f"built in {r['seconds']:.0f} s" if r["built"] else "already there"
    say(f"lab engine wheel: {r['path']} ({state})")
    for directory, seed in MODELS.items():
        r = tiny_model.write(root / directory, seed=seed)
        state = f"{r['written']} written" if r["written"] else "already up to date"
        say(f"lab model in {r['path']}: {r['files']} files, {r['bytes']} bytes ({state})")
    r = tiny_image.ensure()
    say(f"lab image {r['name']}: {r['id']} ({'made' if r['made'] else 'already there'})")
