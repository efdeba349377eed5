"""The booster's trees walked in numpy: predictions and per-feature attributions for the
few rows a refresh scores.

For one row, XGBoost's ``inplace_predict`` spends ~1-4 ms in per-call set-up for a
400-round, three-quantile model, and ``pred_contribs=True, approx_contribs=True`` (Saabas:
along each row's path, the change in the node's mean value is credited to the split's
feature) builds a ``DMatrix`` and walks every tree of every output again: together about
half of a refresh's 10 ms budget. Here the trees are packed once into flat arrays and
walked level by level for all trees at once, with XGBoost's decision rules:

* numeric split: ``value < threshold`` goes left (float32 compare), missing follows the
  node's default direction;
* categorical split: a category in the node's set goes right, any other goes left,
  missing follows the default direction.

For a few rows one walk gives every output's raw prediction (the leaf values summed per
output, plus the base score or the caller's base margin) and the attributions of one
output; for batches, where XGBoost predicts faster, only the explained output's trees are
walked. Tests hold both to XGBoost's own ``inplace_predict`` and ``approx_contribs``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

# Above this many (categorical node, category) cells the sets stay a sorted key array.
DENSE_CELLS = 16_000_000


@dataclass(frozen=True)
class TreePaths:
    """Every tree of a booster, flattened: node arrays indexed by global node id."""

    roots: np.ndarray        # (trees,) global id of each root
    tree_group: np.ndarray   # (trees,) output each tree adds to
    left: np.ndarray         # (nodes,) global id of the left child, -1 for leaves
    right: np.ndarray
    step_left: np.ndarray    # the walk's next node: the children, a leaf itself
    step_right: np.ndarray
    # The walk's step and its attribution, looked up together by node * 2 + goes right:
    # the next node, and the change in the mean value that step credits to the split.
    step: np.ndarray         # (nodes * 2,) int32 (unless a forest has 2**30 nodes)
    gain: np.ndarray         # (nodes * 2,) float64
    feature: np.ndarray      # split feature index
    threshold: np.ndarray    # float32 split value (numeric splits)
    default_left: np.ndarray  # bool
    categorical: np.ndarray  # bool: categorical split
    mean: np.ndarray         # cover-weighted mean leaf value under each node (leaf: its value)
    category_keys: np.ndarray  # sorted node * 2**32 + category for "goes right" sets
    # The same sets as a dense (categorical node, category) table when it is small enough
    # (one gather instead of a binary search per level); cat_row maps node -> table row.
    cat_row: np.ndarray | None
    cat_table: np.ndarray | None
    base_score: np.ndarray   # (groups,) what the sums start from without a base margin
    n_features: int
    depth: int

    @classmethod
    def from_booster(cls, booster: xgb.Booster, max_dense_cells: int = DENSE_CELLS
                     ) -> TreePaths:
        """Pack every tree of ``booster``."""
        model = json.loads(bytes(booster.save_raw("json")))["learner"]
        params = model["learner_model_param"]
        n_features = int(params["num_feature"])
        base = np.atleast_1d(np.asarray(json.loads(params["base_score"]), dtype=np.float64))
        forest = model["gradient_booster"]["model"]
        roots, lefts, rights, feats, thresholds, defaults, cats, means, keys = (
            [], [], [], [], [], [], [], [], [])
        offset, depth = 0, 0
        for tree in forest["trees"]:
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
        groups = np.asarray(forest["tree_info"], dtype=np.int64)
        category_keys = (np.sort(np.concatenate(keys)) if keys
                         else np.empty(0, dtype=np.int64))
        cat_row, cat_table = _dense_sets(category_keys, offset, max_dense_cells)
        left, right = np.concatenate(lefts), np.concatenate(rights)
        itself = np.arange(len(left), dtype=np.int64)
        step_left = np.where(left < 0, itself, left)
        step_right = np.where(right < 0, itself, right)
        mean = np.concatenate(means)
        step = np.stack([step_left, step_right], axis=1).ravel()
        ids = np.int32 if len(step) < 2**31 else np.int64
        return cls(roots=np.asarray(roots, dtype=np.int64), tree_group=groups,
                   left=left, right=right, step_left=step_left, step_right=step_right,
                   step=step.astype(ids), gain=mean[step] - np.repeat(mean, 2),
                   feature=np.concatenate(feats), threshold=np.concatenate(thresholds),
                   default_left=np.concatenate(defaults), categorical=np.concatenate(cats),
                   mean=mean,
                   # one form of the sets is enough: the table when there is one
                   category_keys=category_keys if cat_table is None
                   else np.empty(0, dtype=np.int64), cat_row=cat_row, cat_table=cat_table,
                   base_score=np.resize(base, int(groups.max(initial=0)) + 1),
                   n_features=n_features, depth=depth)

    def walk(self, X: np.ndarray, explain_group: int, base_margin: np.ndarray | None = None,
             predict: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        """(raw predictions (n, groups), Saabas attributions (n, features) of output
        ``explain_group``) for the float32 matrix ``X`` (NaN = missing, categories as their
        integer codes). ``base_margin`` (n, groups) replaces the base score, as in XGBoost.

        The walk's cost grows with rows x trees; ``predict=False`` walks only the explained
        output's trees and returns no predictions (for batches, which XGBoost predicts
        faster)."""
        X = np.asarray(X, dtype=np.float32)
        n = len(X)
        trees = (np.arange(len(self.roots)) if predict
                 else np.flatnonzero(self.tree_group == explain_group))
        # Every (row, tree) pair walks at once, flat; a leaf steps to itself (its mean
        # changes by zero), so no pair is ever dropped and no level compacts the arrays.
        # Node ids fit in 32 bits: half the memory traffic of every gather below.
        node = np.tile(self.roots[trees].astype(self.step.dtype), n)
        at = np.repeat(np.arange(n, dtype=np.int64) * X.shape[1], len(trees))
        cell = (at if X.shape[1] == self.n_features else
                np.repeat(np.arange(n, dtype=np.int64) * self.n_features, len(trees)))
        values = X.ravel()
        explained = (None if not predict else
                     np.tile(self.tree_group[trees] == explain_group, n))
        contrib = np.zeros(n * self.n_features)
        for _ in range(self.depth):
            f = self.feature[node]
            x = values[at + f]
            goes_right = (x < self.threshold[node]).view(np.int8) ^ 1
            missing = np.isnan(x)
            if missing.any():
                goes_right[missing] = ~self.default_left[node[missing]]
            cat = self.categorical[node]
            cat &= ~missing
            if cat.any():
                goes_right[cat] = self._goes_right(node[cat], x[cat])
            move = node * 2 + goes_right
            delta = self.gain[move]
            if explained is not None:
                delta[~explained] = 0.0
            contrib += np.bincount(cell + f, delta, minlength=len(contrib))
            node = self.step[move]
        if not predict:
            return None, contrib.reshape(n, self.n_features)
        n_groups = len(self.base_score)
        row = np.repeat(np.arange(n), len(trees))
        leaves = np.bincount(row * n_groups + np.tile(self.tree_group[trees], n),
                             self.mean[node], minlength=n * n_groups)
        start = (np.broadcast_to(self.base_score, (n, n_groups)) if base_margin is None
                 else np.asarray(base_margin, dtype=np.float64).reshape(n, n_groups))
        return start + leaves.reshape(n, n_groups), contrib.reshape(n, self.n_features)

    def _goes_right(self, nodes: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Categorical splits: is each (non-missing) category in its node's set? A negative
        or unknown code is in no set (XGBoost sends it left)."""
        nodes = nodes.astype(np.int64)
        code = np.where(values < 0, -1, values).astype(np.int64)
        if self.cat_table is not None and self.cat_row is not None:
            valid = (code >= 0) & (code < self.cat_table.shape[1])
            out = np.zeros(len(code), dtype=bool)
            out[valid] = self.cat_table[self.cat_row[nodes[valid]], code[valid]]
            return out
        key = (nodes << 32) + np.maximum(code, 0)
        pos = np.minimum(np.searchsorted(self.category_keys, key),
                         max(len(self.category_keys) - 1, 0))
        return (len(self.category_keys) > 0) & (self.category_keys[pos] == key) & (code >= 0)


def _dense_sets(keys: np.ndarray, n_nodes: int, max_cells: int
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(node -> row, row x category table) of the categorical sets, or (None, None) when
    the table would exceed ``max_cells``."""
    nodes, rows = np.unique(keys >> 32, return_inverse=True)
    categories = keys & 0xFFFF_FFFF
    width = int(categories.max(initial=-1)) + 1
    if len(nodes) * width > max_cells:
        return None, None
    cat_row = np.full(n_nodes, -1, dtype=np.int64)
    cat_row[nodes] = np.arange(len(nodes))
    table = np.zeros((len(nodes), width), dtype=bool)
    table[rows, categories] = True
    return cat_row, table


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
