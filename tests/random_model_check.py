"""Checks that a model made by `edgeinf random-model` is shaped like the model it was made from:
the same tensors (names, types, shapes, in order) and the same metadata (keys and value types), as
the gguf package reads them; and that its weights are not those of the original."""
import sys

import gguf
import numpy as np


def main(original: str, random: str) -> int:
    a, b = gguf.GGUFReader(original), gguf.GGUFReader(random)
    ta = [(t.name, t.tensor_type.name, list(t.shape)) for t in a.tensors]
    tb = [(t.name, t.tensor_type.name, list(t.shape)) for t in b.tensors]
    problems = []
    if ta != tb:
        problems.append(f"tensors differ: {len(ta)} vs {len(tb)}; first difference "
                        f"{next((x, y) for x, y in zip(ta, tb) if x != y) if len(ta) == len(tb) else '-'}")
    fa = {k: [int(t) for t in v.types] for k, v in a.fields.items() if not k.startswith("GGUF.")}
    fb = {k: [int(t) for t in v.types] for k, v in b.fields.items() if not k.startswith("GGUF.")}
    if set(fa) != set(fb):
        problems.append(f"metadata keys differ: {sorted(set(fa) ^ set(fb))}")
    same = sum(np.array_equal(x.data, y.data) for x, y in zip(a.tensors, b.tensors) if x.n_elements > 1024)
    if same:
        problems.append(f"{same} tensors hold the original's weights")
    for p in problems:
        print(f"random_model_check: {p}")
    if not problems:
        print(f"random_model_check: {len(ta)} tensors and {len(fa)} metadata keys as in {original}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
