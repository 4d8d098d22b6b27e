"""seqreg_hf.arguments: one home for each default, every spelling of an option, config files merged under the flags."""

import argparse
import dataclasses
import inspect
import json

import pytest

import seqreg_hf
from seqreg_hf.arguments import NOT_FLAGS, ArchitectureArguments, command_parser, parse_arguments, parse_command
from seqreg_hf.configuration_seqreg import CHOICES, SeqRegConfig

from .conftest import REPO, run_cli


def test_every_spelling_argparse_accepts_means_the_same():
    base = ["--train_file", "x.csv", "--label_columns", "y", "--output_dir", "o"]
    spellings = (["--learning-rate", "1e-4"], ["--learning_rate", "1e-4"], ["--learn", "1e-4"], ["--learning-r", "1e-4"])
    for spelling in spellings:
        assert parse_arguments(base + spelling).training.learning_rate == 1e-4
    assert parse_arguments(base + ["--num_train_epoch", "2"]).training.num_train_epochs == 2
    assert parse_arguments(base + ["--hidden-size", "64"]).architecture.hidden_size == 64


def test_help_prints_the_defaults_that_run(tmp_path):
    result = run_cli("train", "--help", env={"SEQREG_HF_CACHE": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 0
    text = result.stdout.split("  --learning_rate LEARNING_RATE", 1)[1].split("\n  --", 1)[0]
    assert "(default: 0.0016)" in " ".join(text.split())
    pin = " ".join(result.stdout.split("  --dataloader_pin_memory", 1)[1].split("\n  --", 1)[0].split())
    assert "on when CUDA is available" in pin  # resolved after parsing: --help says how
    assert "--do_train" not in result.stdout  # run_glue's switches are not offered: they would change nothing
    parsed = parse_arguments(["--output_dir", str(tmp_path)])
    shown = 0
    for action in command_parser("train")._actions:
        group = next((g for g in parsed[:5] if action.dest in getattr(g, "__dataclass_fields__", {})), None)
        hidden = action.help == argparse.SUPPRESS  # run_glue's --do_*: not offered, so nothing is printed
        if group is None or hidden or action.option_strings[0].startswith("--no_") or action.dest in ("output_dir",):
            continue
        value = getattr(group, action.dest)
        if action.default != value:  # only where None means "off" (transformers' own) or a rule --help states
            resolved = {"activation_checkpointing", "gradient_checkpointing", "debug", "accelerator_config",
                        "dataloader_pin_memory"}
            assert (action.default is None and action.dest in resolved) or value == [action.default], action.dest
        shown += 1
    assert shown > 150  # every option of the five groups was compared: what --help prints is what runs


def test_train_without_a_config_file_builds_the_configs_default_model(tmp_path):
    """The issue's promise: no config file, no architecture flags -> the architecture of SeqRegConfig()'s signature,
    over the frozen packaged MiniLM-L6's hidden states (the embeddings decide the input: a transformer's states, a
    vector file's table), trained with the learning rate `train --help` prints."""
    from seqreg_hf.training import load_or_build_model

    run = parse_arguments(["--output_dir", str(tmp_path), "--label_columns", "V", "A", "D"])
    signature = inspect.signature(SeqRegConfig.__init__).parameters
    assert {k: v for k, v in run.architecture.config_kwargs().items()
            if v != (signature[k].default if k not in ("head_hidden_sizes", "embedding_layers") else [])} == {}
    model, _ = load_or_build_model(run, None)
    built = model.config.to_dict()
    default = SeqRegConfig(contextual_config=built["contextual_config"], vocab_size=built["vocab_size"],
                           id2label={0: "V", 1: "A", 2: "D"}).to_dict()
    assert {k: v for k, v in built.items() if v != default.get(k) and k != "embeddings_source"} == {}
    assert built["embedding_type"] == "contextual" and built["contextual_config"]["model_type"] == "bert"
    assert built["contextual_config"]["num_hidden_layers"] == 6 and built["embedding_dim"] == 384  # MiniLM-L6
    # the EmoBank search's winner (README, Search): 2 members, each a 2-layer BiLSTM-128 with attention, scalar mix
    assert (built["rnn_type"], built["hidden_size"], built["num_layers"], built["pooling"], built["layer_mix"],
            built["ensemble_size"]) == ("lstm", 128, 2, "attention", "scalar", 2)
    assert sum(p.requires_grad for p in model.base_model.embeddings.contextual.parameters()) == 0
    actions = {a.dest: a for a in command_parser("train")._actions}
    assert run.training.learning_rate == actions["learning_rate"].default
    # A vector file has no states: the same defaults build a static model over its table.
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("".join(f"{w} {i / 10} 0.5 -0.5 1.0\n" for i, w in enumerate(["a", "b", "c"])))
    static, _ = load_or_build_model(parse_arguments(["--output_dir", str(tmp_path), "--label_columns", "y",
                                                     "--embeddings", str(vectors)]), None)
    assert static.config.embedding_type == "static" and static.config.embedding_dim == 4
    assert SeqRegConfig().embedding_type == "static"  # a bare config holds no transformer to read


def test_bare_switches_and_run_glue_flags(tmp_path, capsys):
    base = ["--train_file", "x.csv", "--label_columns", "y", "--output_dir", "o"]
    assert parse_arguments(base + ["--disable_tqdm"]).training.disable_tqdm is True  # it used to need a value
    assert parse_arguments(base).training.disable_tqdm is False
    assert parse_command("init", ["--disable_tqdm"])[3].disable_tqdm is True  # ... as it does on init
    assert parse_arguments(base + ["--no_bidirectional"]).architecture.bidirectional is False
    # A default decided at run time keeps every spelling it had when it was a plain switch.
    pins = [parse_arguments(base + flags).training.dataloader_pin_memory for flags in
            (["--dataloader_pin_memory"], ["--dataloader_pin_memory", "false"], ["--no_dataloader_pin_memory"])]
    assert pins == [True, False, False]
    for flag in ("--do_train", "--do_eval", "--do_predict"):
        with pytest.raises(SystemExit) as stop:
            parse_arguments(base + [flag])
        assert stop.value.code == 2 and f"{flag} is not an option of seqreg-hf train" in capsys.readouterr().err
        with pytest.raises(ValueError, match=f"train\\(\\): {flag[2:]} is not an option of seqreg-hf train"):
            parse_arguments(base, values={flag[2:]: True})  # a config file or keyword is refused the same way
    with pytest.raises(SystemExit):
        parse_arguments(base + ["--lo", "1"])
    assert "ambiguous option: --lo could match" in capsys.readouterr().err


def test_file_and_keyword_values_are_typed_as_their_flags_type_words(tmp_path):
    """Values that look like flags, enums and negative numbers: a file's value is a value, never a word to parse."""
    from transformers.trainer_utils import IntervalStrategy

    run = parse_arguments(["--output_dir", "o"], values={
        "run_name": "-exp", "widget_examples": ["--wow", "fine"], "eval_strategy": IntervalStrategy.STEPS,
        "save_strategy": "steps", "weight_decay": -0.0, "learning_rate": 1e-5, "lr_scheduler_kwargs": {"power": 2.0},
        "label_columns": []})
    assert (run.training.run_name, run.data.widget_examples) == ("-exp", ["--wow", "fine"])
    assert run.training.eval_strategy == "steps" and run.training.lr_scheduler_kwargs == {"power": 2.0}
    assert run.data.label_columns == []
    with pytest.raises(ValueError, match=r"train\(\): hidden_size=\[1, 2\] is a list; hidden_size takes one value"):
        parse_arguments(["--output_dir", "o"], values={"hidden_size": [1, 2]})
    # --config_overrides: an empty list option, and what follows a bare -- is not read as an option
    run = parse_arguments(["--output_dir", "o", "--config_overrides", "head_hidden_sizes=,hidden_size=12"])
    assert (run.architecture.head_hidden_sizes, run.architecture.hidden_size) == ([], 12)


def test_architecture_flags_are_derived_from_the_config():
    parameters = [p for p in inspect.signature(SeqRegConfig.__init__).parameters if p not in ("self", "kwargs")]
    flags = [f.name for f in dataclasses.fields(ArchitectureArguments)]
    assert flags == [p for p in parameters if p not in NOT_FLAGS]
    actions = {a.dest: a for a in command_parser("train")._actions}
    for name, choices in CHOICES.items():
        assert tuple(actions[name].choices) == choices
    assert "Lin's concordance correlation" in actions["loss"].help  # the config's docstring is the help


def test_config_overrides_and_conflicts():
    base = ["--train_file", "x.csv", "--label_columns", "y", "--output_dir", "o"]
    run = parse_arguments(base + ["--config_overrides", "hidden_size=32,pooling=attention,bidirectional=false,"
                                                        "head_hidden_sizes=64;16"])
    chosen = run.architecture
    assert (chosen.hidden_size, chosen.pooling, chosen.bidirectional) == (32, "attention", False)
    assert chosen.head_hidden_sizes == [64, 16]
    assert {"hidden_size", "pooling", "bidirectional"} <= run.explicit
    with pytest.raises(ValueError, match=r"given both as option\(s\) \(a flag"):
        parse_arguments(base + ["--hidden_size", "16", "--config_overrides", "hidden_size=32"])
    with pytest.raises(ValueError, match="not key=value"):
        parse_arguments(base + ["--config_overrides", "learning_rate=1"])
    with pytest.raises(ValueError, match="--config_overrides: hidden_size='big' is not a valid int"):
        parse_arguments(base + ["--config_overrides", "hidden_size=big"])


def test_output_dir_is_required_not_defaulted(tmp_path):
    with pytest.raises(ValueError, match="--output_dir is required"):
        seqreg_hf.train(train_file=str(tmp_path / "x.csv"), label_columns=["y"])
    assert not (REPO / "trainer_output").exists()


def test_bad_choice_is_refused_before_any_work(tmp_path):
    result = run_cli("train", "--train_file", str(tmp_path / "none.csv"), "--label_columns", "y", "--output_dir",
                     str(tmp_path / "o"), "--rnn_type", "transformer")
    assert result.returncode == 2 and "invalid choice: 'transformer'" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["json", "yaml"])
def test_config_file_with_flag_overrides(tmp_path, kind):
    values = {"train_file": "x.csv", "label_columns": ["V", "A"], "output_dir": "out", "hidden_size": 64,
              "seed": 3, "learning_rate": 0.01}
    path = tmp_path / f"cfg.{kind}"
    if kind == "json":
        path.write_text(json.dumps(values))
    else:
        import yaml

        path.write_text(yaml.safe_dump(values))
    run = parse_arguments([str(path), "--seed", "1", "--learning-rate", "1e-4"])
    assert (run.training.seed, run.training.learning_rate) == (1, 1e-4)  # flags win over the file
    assert run.architecture.hidden_size == 64 and run.data.label_columns == ["V", "A"]
    assert run.architecture.rnn_type == seqreg_hf.SeqRegConfig().rnn_type  # neither says: the config's default
    (tmp_path / "bad.json").write_text(json.dumps({**values, "hiden_size": 3}))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hiden_size'\]"):
        parse_arguments([str(tmp_path / "bad.json")])
    (tmp_path / "choice.json").write_text(json.dumps({**values, "pooling": "median"}))
    with pytest.raises(ValueError, match="choice.json: pooling='median' is not supported"):
        parse_arguments([str(tmp_path / "choice.json")])
    # File values are typed as the flags would be: a scalar for a list option, a whole float for an int.
    (tmp_path / "typed.json").write_text(json.dumps({**values, "head_hidden_sizes": 64, "ensemble_size": 2.0,
                                                     "label_columns": "V", "bidirectional": "false"}))
    typed = parse_arguments([str(tmp_path / "typed.json")])
    assert typed.architecture.head_hidden_sizes == [64] and typed.architecture.ensemble_size == 2
    assert typed.data.label_columns == ["V"] and typed.architecture.bidirectional is False
    (tmp_path / "fraction.json").write_text(json.dumps({**values, "ensemble_size": 2.5}))
    with pytest.raises(ValueError, match="fraction.json: ensemble_size=2.5 is not a valid int"):
        parse_arguments([str(tmp_path / "fraction.json")])
    help_text = run_cli("train", str(path), "--help", env={"COLUMNS": "200"}).stdout
    assert "(default: 64)" in help_text.split("--hidden_size HIDDEN_SIZE", 2)[2].split("\n  --", 1)[0]


def test_the_recipe_is_one_file():
    """The EmoBank recipe names the data and nothing the defaults already say; the static recipe names the data and
    only where it deviates; no module writes the architecture's values again."""
    data_keys = {"train_file", "data_url", "split_column", "text_column", "label_columns", "output_dir"}
    recipe_file = REPO / "scripts" / "configs" / "emobank.json"
    assert not recipe_file.is_symlink() and len(recipe_file.read_text().splitlines()) <= 10
    recipe = json.loads(recipe_file.read_text())
    assert set(recipe) == data_keys
    static = json.loads((REPO / "scripts" / "configs" / "emobank_static.json").read_text())
    same_data = data_keys - {"output_dir"}
    assert {k: static[k] for k in same_data} == {k: recipe[k] for k in same_data}
    deviations = {k: v for k, v in static.items() if k not in data_keys}
    assert deviations["embedding_type"] == "static"
    run = parse_arguments(["--output_dir", "o"])
    for name, value in deviations.items():  # each one differs from its default, or it would not be written
        group = run.architecture if hasattr(run.architecture, name) else run.training
        assert getattr(group, name) != value, name
    recipes = sorted(p.name for p in (REPO / "scripts" / "configs").glob("*.json"))  # the search's space is YAML
    assert recipes == ["emobank.json", "emobank_static.json", "stsb.json"]
    assert not (REPO / "seqreg_hf" / "recipes").exists()
    for name in ("arguments.py", "training.py", "model_card.py"):  # the architecture's defaults live in the config
        text = (REPO / "seqreg_hf" / name).read_text()
        for value in ('"lstm"', '"gru"', '"attention"', '"mean_max"', "0.47", "0.22"):
            assert value not in text, (name, value)




def test_the_stsb_recipe_parses_as_train_reads_it(tmp_path):
    """scripts/configs/stsb.json: STS-B's pairs (sentence1, sentence2 -> score) from the shared data, split by its
    split column, on the default (contextual MiniLM) embeddings, a siamese model over the last state, chosen by dev
    Pearson."""
    recipe = REPO / "scripts" / "configs" / "stsb.json"
    run = parse_arguments([str(recipe)])
    assert run.data.train_file == "../shared/data/stsb.csv" and (REPO / run.data.train_file).exists()
    assert (run.data.split_column, run.data.text_column, run.data.text_pair_column) == ("split", "sentence1",
                                                                                       "sentence2")
    assert run.data.label_columns == ["score"] and run.training.output_dir == "outputs/stsb"
    assert run.architecture.pair_encoding == "siamese" and run.training.metric_for_best_model == "pearson_mean"
    assert run.embeddings.embeddings is None and run.architecture.embedding_type is None  # the default embeddings
    assert run.architecture.embedding_layers == [-1]  # MiniLM's last state: chosen on dev (README, STS Benchmark)
    # the recipe's pair encoding is the one --text_pair_column alone gives; beside the layer, the file spells out
    # the model its README figures were measured with (the defaults then), so a change of defaults leaves it as it is
    measured = parse_arguments(["--output_dir", str(tmp_path), "--text_pair_column", "sentence2",
                                "--embedding_layers", "-1", "--rnn_type", "gru", "--hidden_size", "256",
                                "--num_layers", "1", "--pooling", "mean_max", "--layer_mix", "mean",
                                "--embedding_dropout", "0.3", "--word_dropout", "0.2", "--rnn_dropout", "0",
                                "--head_dropout", "0.4", "--ensemble_size", "1"])
    assert measured.architecture == run.architecture
    assert (run.training.learning_rate, run.training.num_train_epochs) == (2e-3, 10)
