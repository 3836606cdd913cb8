//! The A2A binding driven by a client no one here wrote: the official Python SDK (`a2a-sdk`
//! 1.3.0 on PyPI, A2A v1.0 JSON-RPC) runs `tests/a2a_sdk/check.py` against the real binary:
//! card resolution, GetTask, another user's task as TaskNotFoundError, SubscribeToTask to the
//! terminal update, ListTasks paging, CancelTask and TaskNotCancelableError.
//!
//! The SDK lives in a virtual environment: `A2A_PYTHON` names its interpreter (`.ci/run` makes
//! one), else one is made under the target directory with `python3 -m venv` on first use.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const SDK: &str = "a2a-sdk==1.3.0";

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("A2A_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("a2a-venv");
    let py = venv.join("bin/python");
    let ready = venv.join(".installed");
    if !ready.exists() {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 -m venv failed: install python3 and python3-venv (.ci/run does)"
        );
        let pip = Command::new(&py).args(["-m", "pip", "install", "-q", SDK]).status();
        assert!(pip.is_ok_and(|s| s.success()), "pip install {SDK} failed");
        std::fs::write(&ready, SDK).unwrap();
    }
    py
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_a2a_python_sdk_drives_the_binding() {
    let py = python();
    let gw = TestGateway::start(&[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/a2a_sdk/check.py");
    let out = tokio::task::spawn_blocking({
        let base = gw.url("");
        move || {
            Command::new(py)
                .arg(script)
                .arg(base)
                .arg(token("sdk-user", None))
                .arg(token("sdk-other", None))
                .arg(producer_token())
                .output()
                .expect("run the SDK check")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("every check passed"), "{stdout}");
}
