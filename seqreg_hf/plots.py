"""Pictures of a run: predicted vs true per target (with r and the identity line), and learning curves."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

# Every text is drawn as written: a label named "$x$" or "$\frac{$" is a name, not mathtext to typeset (parsing it
# as mathtext fails after training and left the run without plots and card).
LITERAL = {"parse_math": False}


def scatter_plot(predicted, true, label_names, path, title=""):
    predicted, true = np.asarray(predicted), np.asarray(true)
    count = len(label_names)
    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, 4.2), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], label_names)):
        p, t = predicted[:, i], true[:, i]
        r = stats.pearsonr(p, t)[0] if np.ptp(p) > 0 and np.ptp(t) > 0 else float("nan")
        ax.scatter(t, p, s=6, alpha=0.35, edgecolors="none")
        low, high = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=1, label="identity")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_xlabel(f"true {name}", **LITERAL)
        ax.set_ylabel(f"predicted {name}", **LITERAL)
        ax.set_title(f"{name}: r = {r:.3f}  (n = {len(t)})", **LITERAL)
        ax.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title, **LITERAL)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_curves(log_history, path, metric="eval_pearson_mean"):
    """Train and eval loss, and the eval metric, against epochs, from Trainer's log history."""

    def series(key):
        # The first value per epoch: evaluations after training (of the best model) repeat the last epoch.
        points = {}
        for entry in log_history:
            if key in entry and "epoch" in entry:
                points.setdefault(entry["epoch"], entry[key])
        return sorted(points.items())

    train, evals, scores = series("loss"), series("eval_loss"), series(metric)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for points, label in ((train, "train loss"), (evals, "eval loss")):
        if points:
            left.plot(*zip(*points), marker="o", label=label)
    left.set_xlabel("epoch")
    left.set_ylabel("loss (standardized targets)")
    left.legend()
    if scores:
        right.plot(*zip(*scores), marker="o", color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel(metric, **LITERAL)
    right.set_title(f"{metric} on the validation split", **LITERAL)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
