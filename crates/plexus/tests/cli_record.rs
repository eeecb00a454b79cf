//! `plexus record` with the real binary against `plexus serve` in development mode, as a new user
//! would try it: `record watch` in one process prints each version while `record set` and
//! `record patch` change the record from others; conflicts and bad patches exit with 1 and a
//! JSON error on stderr.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

mod common;

use common::{Running, WAIT, free_port, plexus, wait_healthy};

struct Serve {
    _child: Running,
    url: String,
}

impl Serve {
    fn start() -> Serve {
        let port = free_port();
        let child = plexus()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("plexus serve starts");
        let child = Running(child);
        wait_healthy(port);
        Serve {
            _child: child,
            url: format!("ws://127.0.0.1:{port}/ws"),
        }
    }

    fn record(&self, args: &[&str]) -> Command {
        let mut command = plexus();
        command.arg("record").args(args).args(["--url", &self.url]);
        command
    }

    /// Runs a `plexus record` command; its exit code, stdout JSON and stderr JSON.
    fn run(&self, args: &[&str]) -> (i32, Value, Value) {
        let out = self.record(args).output().unwrap();
        let parse = |b: &[u8]| serde_json::from_slice(b).unwrap_or(Value::Null);
        (
            out.status.code().unwrap(),
            parse(&out.stdout),
            parse(&out.stderr),
        )
    }
}

#[test]
fn record_watch_prints_each_version_while_set_and_patch_change_it() {
    let serve = Serve::start();
    for mode in [&[][..], &["--patch"][..]] {
        let id = if mode.is_empty() {
            "profile:1"
        } else {
            "profile:2"
        };
        let mut watch = serve
            .record(&[&["watch", id, "--count", "4"][..], mode].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = watch.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let next =
            || -> Value { serde_json::from_str(&lines.recv_timeout(WAIT).unwrap()).unwrap() };
        // The first line is the record now: the watch is subscribed.
        assert_eq!(
            next(),
            json!({"id": id, "version": 0, "epoch": "", "value": null})
        );

        let (code, out, _) = serve.run(&["set", id, r#"{"name":"Ada"}"#]);
        assert_eq!((code, &out["version"]), (0, &json!(1)));
        let (code, _, _) = serve.run(&[
            "patch",
            id,
            r#"[{"op":"add","path":"/langs","value":["en"]}]"#,
        ]);
        assert_eq!(code, 0);
        // A stale compare-and-set is refused and changes nothing.
        let (code, _, err) = serve.run(&["set", id, r#"{"name":"Bob"}"#, "--expect", "1"]);
        assert_eq!(
            (code, &err["code"], &err["data"]),
            (1, &json!(121), &json!({"version": 2}))
        );
        let (code, _, err) = serve.run(&["patch", id, r#"[{"op":"remove","path":"/nope"}]"#]);
        assert_eq!((code, &err["code"]), (1, &json!(122)));
        let (code, _, _) = serve.run(&["set", id, r#"{"name":"Grace"}"#, "--expect", "2"]);
        assert_eq!(code, 0);

        let values: Vec<(Value, Value)> = (0..3)
            .map(|_| next())
            .map(|v| (v["version"].clone(), v["value"].clone()))
            .collect();
        assert_eq!(
            values,
            [
                (json!(1), json!({"name": "Ada"})),
                (json!(2), json!({"name": "Ada", "langs": ["en"]})),
                (json!(3), json!({"name": "Grace"})),
            ],
            "{mode:?}"
        );
        assert!(watch.wait().unwrap().success());
        let (code, now, _) = serve.run(&["get", id]);
        assert_eq!(
            (code, &now["version"], &now["value"]),
            (0, &json!(3), &json!({"name": "Grace"}))
        );
    }
    let (code, _, err) = serve.run(&["delete", "missing"]);
    assert_eq!((code, &err["code"]), (1, &json!(119)));
}
