//! What `config::load` says of a bad directory: one-line errors naming the file, the field and
//! the reason (with the position of a syntax or type error), and the unknown-key warnings.

use super::*;

#[test]
fn unknown_keys_warn() {
    let conf = minimal("intervl = 5\n[[instances]]\nolama_url = \"http://x:1\"\n");
    conf.write(
        MAIN_FILE,
        "[global]\nhostnme = \"a\"\n[[writers]]\nurl = \"http://n9e:17000/w\"\nretries = 3\n",
    );
    let warnings = conf.ok().warnings;
    let expect = [
        "config.toml: global: unknown key \"hostnme\"",
        "config.toml: writers[0]: unknown key \"retries\"",
        "ollama.toml: unknown key \"intervl\"",
        "ollama.toml: instances[0]: unknown key \"olama_url\" (ignored",
    ];
    for needle in expect {
        assert!(
            warnings.iter().any(|w| w.contains(needle)),
            "{needle:?} not in {warnings:?}"
        );
    }
    assert_eq!(warnings.len(), expect.len(), "{warnings:?}");
}

#[test]
fn missing_files_and_dirs() {
    let conf = TempConf::new();
    conf.err(&["config.toml: cannot read: No such file or directory"]);
    conf.write(MAIN_FILE, "");
    conf.err(&["input.ollama: no [[instances]] configured"]);
    conf.write("input.ollama/ollama.toml", "interval = 5\n");
    conf.err(&["input.ollama: no [[instances]] configured"]);
    let _ = std::fs::remove_dir_all(conf.dir.join(INPUT_DIR));
    conf.err(&["input.ollama: cannot read directory: No such file or directory"]);
}

#[test]
fn syntax_errors_have_line_and_column() {
    let conf = minimal("[[instances]]\n");
    conf.write(MAIN_FILE, "[global]\nhostname = \"a\"\ninterval = \n");
    conf.err(&["config.toml:3:12: TOML parse error: "]);
    let conf = minimal("[[instances]]\nollama_url = http://x\n");
    conf.err(&["ollama.toml:2:14: TOML parse error: "]);
}

#[test]
fn type_errors_name_the_field() {
    minimal("[[instances]]\n[[instances]]\ntimeout = true\n")
        .err(&["ollama.toml:3:11: instances[1].timeout: invalid type: boolean `true`"]);
    minimal("[[instances]]\n[instances.labels]\nn = 1\n")
        .err(&["ollama.toml:3:5: instances[0].labels.n: "]);
    minimal("interval = false\n[[instances]]\n").err(&["ollama.toml:1:12: interval: "]);
    minimal("[instances]\nollama_url = \"http://x\"\n")
        .err(&["ollama.toml: instances: is a single table; write [[instances]]"]);
    minimal("[[instances]]\nmax_models = -1\n")
        .err(&["ollama.toml:2:14: instances[0].max_models: "]);
    // the first bad value in the file, with its own position
    minimal("[[instances]]\nproxy_listen_addr = 1\nmax_models = \"x\"\n")
        .err(&["ollama.toml:2:21: instances[0].proxy_listen_addr: invalid type: integer"]);
    minimal("[[instances]]\ntimeout = 1979-05-27\n")
        .err(&["ollama.toml:2:11: instances[0].timeout: invalid type: map"]);
    // an element of a list is named by its list
    minimal("metrics_drop = [\"a\", 1]\n[[instances]]\n")
        .err(&["ollama.toml:1:22: metrics_drop: invalid type: integer"]);
    let conf = minimal("[[instances]]\n");
    conf.write(
        MAIN_FILE,
        "[[writers]]\nurl = \"http://a/\"\n[[writers]]\ntimeout = \"5s\"\n",
    );
    conf.err(&["config.toml:4:11: writers[1].timeout: invalid type: string"]);
    conf.write(
        MAIN_FILE,
        "[[writers]]\nurl = \"http://a/\"\nheaders = [\"a\", 1]\n",
    );
    conf.err(&["config.toml:3:17: writers[0].headers: invalid type: integer"]);
    conf.write(MAIN_FILE, "[log]\nlevel = 5\n[global]\nhostname = 1\n");
    conf.err(&["config.toml:2:9: log.level: "]);
    conf.write(MAIN_FILE, "[global]\nomit_hostname = \"yes\"\n");
    conf.err(&["config.toml:2:17: global.omit_hostname: "]);
}

#[test]
fn invalid_values_name_file_and_field() {
    minimal("[[instances]]\nollama_url = \"htp//x\"\n")
        .err(&["ollama.toml: instances[0].ollama_url: \"htp//x\" is not an http(s) URL"]);
    minimal("[[instances]]\nollama_url = \"http://x/?a=1\"\n")
        .err(&["instances[0].ollama_url: \"http://x/?a=1\" has a query string"]);
    // the password is not echoed back: the error shows ***@
    minimal("[[instances]]\nollama_url = \"http://admin:s3cret@gpu:11434\"\n").err(&["instances[0].ollama_url: \"http://***@gpu:11434\": credentials (user:pass@) in ollama_url are not supported"]);
    minimal("[[instances]]\ntimeout = \"abc\"\n")
        .err(&["ollama.toml: instances[0].timeout: \"abc\" is not a duration"]);
    minimal("[[instances]]\ninterval = \"-1s\"\n")
        .err(&["ollama.toml: instances[0].interval: \"-1s\" is negative"]);
    minimal("interval = \"5x\"\n[[instances]]\n")
        .err(&["ollama.toml: interval: \"5x\" is not a duration"]);
    minimal("[[instances]]\nproxy_listen_addr = \"8000\"\n")
        .err(&["ollama.toml: instances[0].proxy_listen_addr: \"8000\" is not a listen address"]);
    minimal("[[instances]]\nmetrics_listen_addr = \"x:y\"\n")
        .err(&["instances[0].metrics_listen_addr: \"x:y\""]);
    minimal("[[instances]]\nproxy_listen_addr = \":18200\"\n[[instances]]\nproxy_listen_addr = \"127.0.0.1:18200\"\n")
        .err(&["ollama.toml: instances[1].proxy_listen_addr: 127.0.0.1:18200 conflicts with", "instances[0]"]);

    let conf = minimal("[[instances]]\n");
    conf.write(MAIN_FILE, "[global]\ninterval = \"soon\"\n");
    conf.err(&["config.toml: global.interval: \"soon\" is not a duration"]);
    conf.write(
        MAIN_FILE,
        "[[writers]]\nurl = \"http://n9e/w\"\nheaders = [\"A\", \"b\", \"C\"]\n",
    );
    conf.err(&["config.toml: writers[0].headers: odd number of entries (3)"]);
    conf.write(MAIN_FILE, "[[writers]]\nurl = \"ftp://n9e/w\"\n");
    conf.err(&["config.toml: writers[0].url: \"ftp://n9e/w\" is not an http(s) URL"]);
    conf.write(MAIN_FILE, "[[writers]]\nbasic_auth_user = \"u\"\n");
    conf.err(&["config.toml: writers[0].url: missing"]);
    conf.write(
        MAIN_FILE,
        "[[writers]]\nurl = \"http://n9e/w\"\ndial_timeout = -1\n",
    );
    conf.err(&["config.toml: writers[0].dial_timeout: -1 is negative"]);
    conf.write(MAIN_FILE, "[log]\nlevel = \"info,=[\"\n");
    conf.err(&["config.toml: log.level: "]);
}
