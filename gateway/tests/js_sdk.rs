//! The JavaScript SDK (`clients/js`): its types checked by `tsc`, its unit tests (`node --test`,
//! fake timers), its integration tests against this gateway binary (a proxy cutting the
//! connection while 2,000 deltas stream, over WebSocket and SSE; a token expiring mid-stream; a
//! drain moving the client to a second Redis-mode node), and the browser test (two Chromium
//! contexts on the `--dev` demo page, one cut mid-turn). Needs Node 20+, npm and Debian's
//! Chromium (`.ci/run` installs them); the SDK's dev dependencies come from `npm ci` on first use.

use std::path::Path;
use std::process::Command;

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GATEWAY_BIN", env!("CARGO_BIN_EXE_gateway"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install Node 20+ and npm"));
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

#[test]
fn the_js_sdk_passes_its_type_check_unit_and_integration_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/js");
    let version = run(&dir, "node", &["--version"]);
    let major: u32 =
        version.trim().trim_start_matches('v').split('.').next().unwrap().parse().unwrap();
    assert!(major >= 20, "the SDK needs Node 20+, found {version}");
    if !dir.join("node_modules/.package-lock.json").exists() {
        run(&dir, "npm", &["ci", "--no-audit", "--no-fund"]);
    }
    run(&dir, "npx", &["tsc", "-p", "tsconfig.json"]);
    let out = run(&dir, "node", &["--test", "--test-reporter=spec", "test/"]);
    println!("{out}");
    assert!(out.contains("cuts survived"), "{out}");
    assert!(out.contains("screenshot at"), "{out}");
}
