"""Per-feature attributions of one booster output, computed in numpy from the trees.

XGBoost's ``pred_contribs=True, approx_contribs=True`` (Saabas: along each row's path,
the change in the node's mean value is credited to the split's feature) builds a
``DMatrix`` and walks every tree of every output: ~4 ms for one row of a 400-round,
three-quantile model, which alone would spend half of a refresh's budget. Here the trees
of the one output we explain (the median) are packed once into flat arrays and walked
level by level for all trees at once, with the same decision rules as XGBoost:

* numeric split: ``value < threshold`` goes left (float32 compare), missing follows the
  node's default direction;
* categorical split: a category in the node's set goes right, any other goes left,
  missing follows the default direction.

A test holds the result to XGBoost's own ``approx_contribs`` on the same rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xgboost as xgb


@dataclass(frozen=True)
class TreePaths:
    """The trees of one output group, flattened: node arrays indexed by global node id."""

    roots: np.ndarray        # (trees,) global id of each root
    left: np.ndarray         # (nodes,) global id of the left child, -1 for leaves
    right: np.ndarray
    feature: np.ndarray      # split feature index
    threshold: np.ndarray    # float32 split value (numeric splits)
    default_left: np.ndarray  # bool
    categorical: np.ndarray  # bool: categorical split
    mean: np.ndarray         # cover-weighted mean leaf value under each node
    category_keys: np.ndarray  # sorted node * 2**32 + category for "goes right" sets
    n_features: int
    depth: int

    @classmethod
    def from_booster(cls, booster: xgb.Booster, group: int) -> TreePaths:
        """Pack the trees of output ``group`` (0-based) of ``booster``."""
        model = json.loads(bytes(booster.save_raw("json")))["learner"]
        n_features = int(model["learner_model_param"]["num_feature"])
        forest = model["gradient_booster"]["model"]
        trees = [t for t, g in zip(forest["trees"], forest["tree_info"], strict=True)
                 if g == group]
        roots, lefts, rights, feats, thresholds, defaults, cats, means, keys = (
            [], [], [], [], [], [], [], [], [])
        offset, depth = 0, 0
        for tree in trees:
            left = np.asarray(tree["left_children"], dtype=np.int64)
            right = np.asarray(tree["right_children"], dtype=np.int64)
            leaf = left < 0
            value = np.asarray(tree["split_conditions"], dtype=np.float32)
            hess = np.asarray(tree["sum_hessian"], dtype=np.float64)
            mean, tree_depth = _node_means(left, right, value.astype(np.float64), hess)
            depth = max(depth, tree_depth)
            roots.append(offset)
            lefts.append(np.where(leaf, -1, left + offset))
            rights.append(np.where(leaf, -1, right + offset))
            feats.append(np.asarray(tree["split_indices"], dtype=np.int64))
            thresholds.append(value)
            defaults.append(np.asarray(tree["default_left"], dtype=bool))
            split_type = np.asarray(tree["split_type"], dtype=np.int64)
            cats.append((split_type == 1) & ~leaf)
            means.append(mean)
            segments = tree["categories_segments"]
            sizes = tree["categories_sizes"]
            for node, start, size in zip(tree["categories_nodes"], segments, sizes,
                                         strict=True):
                chosen = np.asarray(tree["categories"][start:start + size], dtype=np.int64)
                keys.append(((node + offset) << 32) + chosen)
            offset += len(left)
        return cls(roots=np.asarray(roots, dtype=np.int64), left=np.concatenate(lefts),
                   right=np.concatenate(rights), feature=np.concatenate(feats),
                   threshold=np.concatenate(thresholds), default_left=np.concatenate(defaults),
                   categorical=np.concatenate(cats), mean=np.concatenate(means),
                   category_keys=np.sort(np.concatenate(keys)) if keys
                   else np.empty(0, dtype=np.int64),
                   n_features=n_features, depth=depth)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Saabas attributions (n rows, n features) of the packed output for the float32
        matrix ``X`` (NaN = missing, categories as their integer codes)."""
        X = np.asarray(X, dtype=np.float32)
        n = len(X)
        out = np.zeros(n * self.n_features)
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        row = np.broadcast_to(np.arange(n)[:, None], node.shape)
        for _ in range(self.depth):
            inner = self.left[node] >= 0
            if not inner.any():
                break
            r, nd = row[inner], node[inner]
            f = self.feature[nd]
            x = X[r, f]
            missing = np.isnan(x)
            go_left = np.where(missing, self.default_left[nd], x < self.threshold[nd])
            cat = self.categorical[nd] & ~missing
            if cat.any():
                code = np.where(x[cat] < 0, -1, x[cat]).astype(np.int64)
                key = (nd[cat] << 32) + np.maximum(code, 0)
                pos = np.searchsorted(self.category_keys, key)
                pos = np.minimum(pos, max(len(self.category_keys) - 1, 0))
                in_set = (len(self.category_keys) > 0) & (self.category_keys[pos] == key)
                go_left[cat] = ~(in_set & (code >= 0))
            child = np.where(go_left, self.left[nd], self.right[nd])
            out += np.bincount(r * self.n_features + f, self.mean[child] - self.mean[nd],
                               minlength=len(out))
            node[inner] = child
        return out.reshape(n, self.n_features)


def _node_means(left: np.ndarray, right: np.ndarray, leaf_value: np.ndarray,
                hess: np.ndarray) -> tuple[np.ndarray, int]:
    """Cover-weighted mean leaf value of every node (XGBoost's FillNodeMeanValues), and
    the tree's depth."""
    order, depth = [0], {0: 0}
    for nid in order:  # breadth first from the root; the list grows as we go
        if left[nid] >= 0:
            order += [int(left[nid]), int(right[nid])]
            depth[int(left[nid])] = depth[int(right[nid])] = depth[nid] + 1
    mean = leaf_value.copy()
    for nid in reversed(order):  # children before their parent
        if left[nid] >= 0:
            a, b = left[nid], right[nid]
            mean[nid] = (mean[a] * hess[a] + mean[b] * hess[b]) / hess[nid]
    return mean, max(depth.values())
