//! Whole-config tests: xl.cfg(5) examples that use supported keys, xl's
//! defaults and rules, overrides, warnings, JSON, and the shipped examples.

use std::path::{Path, PathBuf};

use toolstack::config::{
    load_config, parse_config, validate_domain_name, CpuAffinity, DomainConfig, NameError,
    ShutdownAction, Warning,
};

const BASE: &str = "name = \"g\"\nkernel = \"/boot/vmlinuz\"\n";

fn ok(text: &str) -> (DomainConfig, Vec<Warning>) {
    parse_config(text, "t.cfg", &[] as &[&str]).unwrap_or_else(|e| panic!("{e}"))
}

fn cfg(extra: &str) -> DomainConfig {
    ok(&format!("{BASE}{extra}")).0
}

fn err(text: &str) -> String {
    parse_config(text, "t.cfg", &[] as &[&str])
        .map(|c| panic!("accepted: {c:?}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn defaults_follow_xl() {
    let c = cfg("");
    assert_eq!((c.memory, c.maxmem), (32, 32));
    assert_eq!((c.vcpus, c.maxvcpus), (1, 1));
    assert_eq!(c.on_poweroff, ShutdownAction::Destroy);
    assert_eq!(c.on_reboot, ShutdownAction::Restart);
    assert_eq!(c.on_crash, ShutdownAction::Destroy);
    assert_eq!(c.cmdline, None);
    assert_eq!(c.uuid, None);
    assert_eq!(c.cpus, None);
    assert!(c.disks.is_empty() && c.vifs.is_empty());
}

#[test]
fn memory_and_vcpus() {
    let c = cfg("memory = 512\n");
    assert_eq!((c.memory, c.maxmem), (512, 512));
    let c = cfg("maxmem = 1024\n");
    assert_eq!((c.memory, c.maxmem), (1024, 1024));
    let c = cfg("memory = 0x200\nmaxmem = 01000\n");
    assert_eq!((c.memory, c.maxmem), (512, 512));
    let c = cfg("memory = '256'\n");
    assert_eq!(c.memory, 256);
    let c = cfg("vcpus = 2\nmaxvcpus = 4\n");
    assert_eq!((c.vcpus, c.maxvcpus), (2, 4));
    let c = cfg("maxvcpus = 4\n");
    assert_eq!((c.vcpus, c.maxvcpus), (1, 4));
}

#[test]
fn separators_from_the_manual() {
    // "Pairs may be separated either by a newline or a semicolon."
    let a = ok("name=\"h0\"\nkernel=\"k\"\nmemory=64\n").0;
    let b = ok("name=\"h0\"; kernel=\"k\"; memory=64").0;
    assert_eq!(a, b);
}

#[test]
fn guest_types() {
    assert_eq!(cfg("type = \"pv\"\n"), cfg(""));
    assert_eq!(cfg("builder = \"generic\"\n"), cfg(""));
    let why = "guest type \"hvm\" is not supported yet: rxen runs PV guests only (type=\"pv\")";
    assert_eq!(
        err("name=\"h0\"\ntype=\"hvm\"\n"),
        format!("t.cfg:2:6: {why}")
    );
    assert_eq!(
        err("name=\"h0\"; type=\"hvm\""),
        format!("t.cfg:1:17: {why}")
    );
    assert!(
        err(&format!("{BASE}type = \"pvh\"\n")).contains("guest type \"pvh\" is not supported yet")
    );
    assert!(err(&format!("{BASE}builder = \"hvm\"\n"))
        .contains("guest type \"hvm\" is not supported yet"));
}

#[test]
fn shutdown_actions() {
    for (word, action) in [
        ("destroy", ShutdownAction::Destroy),
        ("restart", ShutdownAction::Restart),
        ("preserve", ShutdownAction::Preserve),
        ("rename-restart", ShutdownAction::RenameRestart),
    ] {
        let c = cfg(&format!(
            "on_poweroff = \"{word}\"\non_reboot = \"{word}\"\non_crash = \"{word}\"\n"
        ));
        assert_eq!(
            (c.on_poweroff, c.on_reboot, c.on_crash),
            (action, action, action)
        );
        assert_eq!(action.to_string(), word);
    }
}

#[test]
fn cmdline_overrides_root_and_extra() {
    let (c, w) = ok(&format!(
        "{BASE}cmdline = \"console=hvc0\"\nroot = \"/dev/xvda1\"\nextra = \"quiet\"\n"
    ));
    assert_eq!(c.cmdline.as_deref(), Some("console=hvc0"));
    assert_eq!(c.root.as_deref(), Some("/dev/xvda1"));
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].to_string(),
        "t.cfg:3:11: warning: ignoring `root` and `extra` in favour of `cmdline`"
    );
}

#[test]
fn root_and_extra_are_joined_like_xl() {
    let c = cfg("root = \"/dev/xvda1 ro\"\nextra = \"console=hvc0 quiet\"\n");
    assert_eq!(
        c.cmdline.as_deref(),
        Some("root=/dev/xvda1 ro console=hvc0 quiet")
    );
    let c = cfg("root = \"/dev/xvda1\"\n");
    assert_eq!(c.cmdline.as_deref(), Some("root=/dev/xvda1"));
    let c = cfg("extra = \"console=hvc0\"\n");
    assert_eq!(c.cmdline.as_deref(), Some("console=hvc0"));
}

#[test]
fn cpus_examples_from_xl_cfg() {
    for s in [
        "all",
        "0-3,5,^1",
        "all,^7",
        "nodes:0-3,^node:2",
        "1,node:1,^6",
        "all,^node:1",
    ] {
        assert!(
            matches!(
                cfg(&format!("cpus = \"{s}\"\n")).cpus,
                Some(CpuAffinity::All(_))
            ),
            "{s}"
        );
    }
    let c = cfg("vcpus = 2\ncpus = [\"2\", \"3-8,^5\"]\n");
    let Some(CpuAffinity::PerVcpu(lists)) = c.cpus else {
        panic!()
    };
    assert_eq!(lists.len(), 2);
    assert_eq!(
        lists[1].resolve(16, &[]).into_iter().collect::<Vec<_>>(),
        vec![3, 4, 6, 7, 8]
    );
}

#[test]
fn uuid_is_validated_and_normalised() {
    let c = cfg("uuid = \"3B2A6E1C-8E4F-4C55-9D1A-0F6B2C7D8E90\"\n");
    assert_eq!(
        c.uuid.unwrap().to_string(),
        "3b2a6e1c-8e4f-4c55-9d1a-0f6b2c7d8e90"
    );
}

#[test]
fn overrides_win_over_the_file() {
    let text = format!("{BASE}memory = 128\nvcpus = 1\nextra = \"console=hvc0\"\n");
    let (c, w) = parse_config(
        &text,
        "t.cfg",
        &[
            "memory=512",
            "name=web1",
            "vcpus = 2; maxvcpus = 4",
            "extra += \" quiet\"",
        ],
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.memory, 512);
    assert_eq!(c.name, "web1");
    assert_eq!((c.vcpus, c.maxvcpus), (2, 4));
    assert_eq!(c.cmdline.as_deref(), Some("console=hvc0 quiet"));
}

#[test]
fn override_errors_name_the_override() {
    let e = parse_config(BASE, "t.cfg", &["memory=lots"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<override 1>:1:8: `memory` must be a number, found string \"lots\""
    );
    let e = parse_config(BASE, "t.cfg", &["vcpus=2", "memory=['x'"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<override 2>:1:12: expected `,` or `]` in the list of `memory` opened at 1:8, found end of file"
    );
    let e = parse_config(BASE, "t.cfg", &["=5"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<override 1>:1:1: expected a setting (KEY=VALUE), found `=`"
    );
}

#[test]
fn warnings_for_unknown_ignored_and_repeated_keys() {
    let (_, w) = ok(&format!(
        "{BASE}colour = \"blue\"\nvnc = 1\nmemory = 64\nmemory = 128\n"
    ));
    let w: Vec<String> = w.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        [
            "t.cfg:3:1: warning: unknown key `colour` is ignored",
            "t.cfg:4:1: warning: `vnc` is not supported by rxen and is ignored",
            "t.cfg:6:1: warning: `memory` is set again (first at line 5); the last value counts",
        ]
    );
    // The vnuma example of xl.cfg(5) parses (nested lists) and is ignored.
    let (_, w) = ok(&format!(
        "{BASE}vnuma = [ [\"pnode=0\",\"size=512\",\"vcpus=0-4\",\"vdistances=10,20\"] ]\n"
    ));
    assert_eq!(w.len(), 1);
}

#[test]
fn domain_names() {
    for good in ["web1", "Domain-0", "a.b_c+d:e@f", "1a"] {
        assert_eq!(validate_domain_name(good), Ok(()), "{good}");
    }
    assert_eq!(validate_domain_name(""), Err(NameError::Empty));
    assert_eq!(validate_domain_name("123"), Err(NameError::AllDigits));
    assert_eq!(validate_domain_name("-x"), Err(NameError::BadStart('-')));
    assert_eq!(validate_domain_name("a/b"), Err(NameError::BadChar('/')));
    assert_eq!(
        validate_domain_name(&"x".repeat(65)),
        Err(NameError::TooLong { max: 64 })
    );
}

#[test]
fn json_round_trip() {
    let (c, _) = load_config(&examples_dir().join("disk.cfg"), &[]).unwrap();
    let json = serde_json::to_string_pretty(&c).unwrap();
    assert!(json.contains("\"type\": \"pv\""), "{json}");
    assert!(json.contains("\"on_reboot\": \"restart\""), "{json}");
    let back: DomainConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn shipped_examples_parse_without_warnings() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cfg") {
            let (c, w) = load_config(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert!(w.is_empty(), "{}: {w:?}", path.display());
            assert!(!c.name.is_empty());
            n += 1;
        }
    }
    assert!(n >= 3);
    let (busybox, _) = load_config(&examples_dir().join("busybox.cfg"), &[]).unwrap();
    assert_eq!(busybox.on_crash, ShutdownAction::Preserve);
    let (disk, _) = load_config(&examples_dir().join("disk.cfg"), &[]).unwrap();
    assert_eq!(
        disk.cmdline.as_deref(),
        Some("root=/dev/xvda1 ro console=hvc0")
    );
    assert_eq!(disk.disks.len(), 2);
    let (net, _) = load_config(&examples_dir().join("network.cfg"), &[]).unwrap();
    assert_eq!(net.vifs[0].bridge.as_deref(), Some("xenbr0"));
}

#[test]
fn missing_file() {
    let e = load_config(Path::new("/nonexistent/x.cfg"), &[]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read /nonexistent/x.cfg: "),
        "{e}"
    );
}
