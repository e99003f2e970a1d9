//! scim2-tester (Yaal Coop, PyPI), software we did not write, runs its RFC 7643/7644
//! compliance checks against the live SCIM server: discovery, CRUD and PATCH on Users and
//! Groups. It needs the venv tests/scim-tester/.venv (`.ci/run` makes it); without it the
//! test says what is missing and skips, and TESSERA_REQUIRE_ALL=1 (CI) makes that a
//! failure. The checks accepted as out of scope are listed, each with why, in
//! tests/scim-tester/check.py.

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::spawn_app;
use crate::scim::provisioning_token;

fn tester_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scim-tester")
}

#[tokio::test]
async fn scim2_tester_finds_nothing_in_scope_to_fault() {
    let python = tester_dir().join(".venv/bin/python");
    let installed = Command::new(&python)
        .args(["-c", "import scim2_tester"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        let msg = "scim2-tester is not installed in tests/scim-tester/.venv: run `python3 -m venv tests/scim-tester/.venv && tests/scim-tester/.venv/bin/pip install -r tests/scim-tester/requirements.txt` (.ci/run does it)";
        crate::helpers::missing_peer(msg);
        return;
    }
    let app = spawn_app().await;
    let (_, token) = provisioning_token(&app).await;
    // People and a group for the checks to find besides what they create.
    let base = app.url("/scim/v2/default");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg("check.py")
            .arg(base)
            .arg(token)
            .current_dir(tester_dir())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // Loopback only: no proxy from the environment may sit in between.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .output()
            .expect("check.py runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scim2-tester found faults:\n{stdout}\n{stderr}"
    );
    // It did test something: discovery, and CRUD and PATCH on both resources.
    for needle in [
        "SUCCESS",
        "User/",
        "Group/",
        "check_add_attribute",
        "object_replacement",
    ] {
        assert!(stdout.contains(needle), "no {needle} in:\n{stdout}");
    }
    let passed = stdout.lines().filter(|l| l.starts_with("SUCCESS")).count();
    assert!(passed >= 40, "only {passed} checks passed:\n{stdout}");
    eprintln!("{stdout}");
    app.stop().await;
}
