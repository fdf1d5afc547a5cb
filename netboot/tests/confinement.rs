//! Issue 15 finding 7: a node's `deploy_kernel`/`deploy_ramdisk` naming a local path is
//! staged (and then served without authentication) only from the configured directories,
//! never from a system directory, never a private file; URLs and kernel parameters that
//! could add words or commands to an iPXE script are refused.

use std::os::unix::fs::PermissionsExt;

use ferrite_netboot::ipxe::{self, DeployBoot, KernelParams};
use ferrite_netboot::{BootFiles, FilesError};

const UUID: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";

#[test]
fn local_sources_only_from_allowed_dirs_and_never_system_or_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let ok = images.join("vmlinuz");
    std::fs::write(&ok, b"kernel").unwrap();
    let outside = elsewhere.join("vmlinuz");
    std::fs::write(&outside, b"other").unwrap();
    let private = images.join("db.sqlite");
    std::fs::write(&private, b"secrets").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A symlink inside the allowed directory pointing out of it.
    std::os::unix::fs::symlink(&outside, images.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", images.join("passwd")).unwrap();

    let files = BootFiles::new(dir.path().join("boot"), "http://10.0.2.2:6385")
        .unwrap()
        .with_local_dirs(std::slice::from_ref(&images))
        .unwrap();
    let url = files
        .deploy_url(UUID, "deploy_kernel", ok.to_str().unwrap())
        .unwrap();
    assert!(
        url.ends_with(&format!("/boot/{UUID}/deploy_kernel")),
        "{url}"
    );

    let refused = |src: &str| files.deploy_url(UUID, "deploy_kernel", src).expect_err(src);
    for src in [
        "/etc/passwd",
        "file:///etc/shadow",
        "/proc/self/environ",
        "/dev/null",
    ] {
        let e = refused(src);
        assert!(matches!(e, FilesError::SystemPath { .. }), "{src}: {e}");
        assert!(e.to_string().contains("never served"), "{e}");
    }
    let e = refused(&images.join("passwd").display().to_string());
    assert!(
        matches!(e, FilesError::SystemPath { .. }),
        "symlink to /etc: {e}"
    );
    for src in [outside.clone(), images.join("link")] {
        let e = refused(src.to_str().unwrap());
        assert!(matches!(e, FilesError::NotAllowed { .. }), "{src:?}: {e}");
        assert!(e.to_string().contains("--file-url-allowed-paths"), "{e}");
    }
    let e = refused(private.to_str().unwrap());
    assert!(matches!(e, FilesError::Private { mode: 0o600, .. }), "{e}");
    assert!(e.to_string().contains("chmod o+r"), "{e}");
    // Nothing refused was staged.
    let staged: Vec<_> = std::fs::read_dir(files.root().join(UUID))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(staged, ["deploy_kernel"]);
    assert_eq!(
        std::fs::read(files.root().join(UUID).join("deploy_kernel")).unwrap(),
        b"kernel"
    );

    // Without configured directories, only URLs are accepted.
    let bare = BootFiles::new(dir.path().join("boot2"), "http://h").unwrap();
    let e = bare
        .deploy_url(UUID, "deploy_kernel", ok.to_str().unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("none configured"), "{e}");

    // The configuration itself cannot open system directories.
    for bad in ["/", "/etc", "/proc/self", "/nonexistent-dir"] {
        let e = BootFiles::new(dir.path().join("boot3"), "http://h")
            .unwrap()
            .with_local_dirs(&[bad.into()])
            .unwrap_err();
        assert!(matches!(e, FilesError::BadAllowedDir { .. }), "{bad}: {e}");
    }
}

#[test]
fn urls_and_kernel_parameters_cannot_inject_ipxe_commands() {
    let dir = tempfile::tempdir().unwrap();
    let files = BootFiles::new(dir.path().join("boot"), "http://h").unwrap();
    for bad in [
        "http://images/k\nshell",
        "http://images/k || shell",
        "http://images/k\tx",
        "https://images/k\u{1b}[2J",
        "http://images/k\r",
    ] {
        let e = files.deploy_url(UUID, "deploy_kernel", bad).unwrap_err();
        assert!(
            e.to_string().contains("whitespace") || e.to_string().contains("control"),
            "{bad:?}: {e}"
        );
    }
    let boot = |kernel: &str, extra: &str| DeployBoot {
        node_uuid: UUID.into(),
        kernel_url: kernel.into(),
        ramdisk_url: "http://h/r".into(),
        params: KernelParams {
            api_url: "http://h:6385".into(),
            extra: vec![extra.into()],
            ..Default::default()
        },
    };
    assert!(ipxe::deploy_script(&boot("http://h/k", "console=ttyS0")).is_ok());
    for (k, p) in [
        ("http://h/k\nshell", "console=ttyS0"),
        ("http://h/k", "a=b\nshell"),
        ("http://h/k", "a=b c"),
        ("http://h/k", "a=\u{7}"),
        ("http://h/k", ""),
    ] {
        let e = ipxe::deploy_script(&boot(k, p)).unwrap_err();
        assert!(e.to_string().contains("fix the node's driver_info"), "{e}");
    }
}

#[test]
fn a_nodes_boot_iso_is_served_from_its_directory_and_nothing_else_by_that_name() {
    use ferrite_netboot::files::ISO_NAME;
    use ferrite_netboot::Served;
    let dir = tempfile::tempdir().unwrap();
    let files = BootFiles::new(dir.path().join("boot"), "http://10.0.2.2:6385").unwrap();
    assert!(matches!(
        files.serve(&format!("{UUID}/{ISO_NAME}")),
        Served::NotFound
    ));
    let iso = files.node_path(UUID, ISO_NAME).unwrap();
    assert_eq!(iso, files.root().join(UUID).join(ISO_NAME));
    std::fs::write(&iso, b"iso").unwrap();
    assert_eq!(
        files.serve(&format!("{UUID}/{ISO_NAME}")),
        Served::File(iso.canonicalize().unwrap())
    );
    // Only the known names, only under a node UUID.
    assert!(files.node_path(UUID, "other.iso").is_err());
    assert!(files.node_path("../etc", ISO_NAME).is_err());
    assert!(matches!(
        files.serve(&format!("{UUID}/../{UUID}/{ISO_NAME}")),
        Served::Refused(_)
    ));
    // A local source is never staged under the ISO's name.
    assert!(files.stage_local(UUID, ISO_NAME, "/tmp/x").is_err());
    files.remove_node_file(UUID, ISO_NAME);
    assert!(!iso.exists());
}

#[test]
fn the_iso_command_line_names_the_port_mac_instead_of_an_ipxe_variable() {
    let p = KernelParams {
        api_url: "http://10.0.2.2:6385".into(),
        inspection_callback_url: None,
        advertise: None,
        extra: vec!["console=ttyS0".into()],
    };
    assert_eq!(
        p.cmdline(Some("52-54-00-fe-30-01")),
        "ipa-api-url=http://10.0.2.2:6385 BOOTIF=01-52-54-00-fe-30-01 console=ttyS0"
    );
    assert_eq!(
        p.cmdline(None),
        "ipa-api-url=http://10.0.2.2:6385 console=ttyS0"
    );
    assert!(p.render().contains("BOOTIF=01-${mac:hexhyp}"));
}
