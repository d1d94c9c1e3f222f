//! Every binary explains itself to a person running it by hand.

use kiln_tests::harness::{command, run};

#[test]
fn help_and_version() {
    for (bin, name) in [("check", "check"), ("in", "in"), ("out", "out"), ("kiln-build", "build")] {
        let mut help = command(bin);
        help.arg("--help");
        let out = run(help, b"");
        out.success();
        assert!(out.stdout.starts_with(name), "{bin} --help: {}", out.stdout);
        let mut version = command(bin);
        version.arg("--version");
        let out = run(version, b"");
        out.success();
        assert_eq!(out.stdout.trim(), format!("{name} (kiln) {}", env!("CARGO_PKG_VERSION")));
    }
    let mut unknown = command("kiln-build");
    unknown.arg("--frob");
    let out = run(unknown, b"");
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("unknown argument \"--frob\""), "{}", out.stderr);
}
