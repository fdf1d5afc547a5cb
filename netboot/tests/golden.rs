//! Golden iPXE scripts (tests/golden/*.ipxe; regenerate with FERRITE_UPDATE_GOLDEN=1 and
//! review the diff) and the `/boot/` file layout with its confinement checks.

use std::path::Path;

use ferrite_netboot::ipxe::{self, DeployBoot, KernelParams};
use ferrite_netboot::{BootFiles, Mac, Served};

fn golden(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("FERRITE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert_eq!(text, want, "{name} differs from its golden file");
}

const UUID: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";

fn deploy() -> DeployBoot {
    DeployBoot {
        node_uuid: UUID.into(),
        kernel_url: "http://10.0.2.2:6385/boot/1be26c0b-03f2-4d2e-ae87-c02d7f33c123/deploy_kernel"
            .into(),
        ramdisk_url:
            "http://10.0.2.2:6385/boot/1be26c0b-03f2-4d2e-ae87-c02d7f33c123/deploy_ramdisk".into(),
        params: KernelParams {
            api_url: "http://10.0.2.2:6385".into(),
            inspection_callback_url: None,
            advertise: Some(("127.0.0.1".into(), 19999)),
            extra: vec!["console=ttyS0".into()],
        },
    }
}

#[test]
fn golden_scripts() {
    golden("boot.ipxe", &ipxe::chain_script("http://10.0.2.2:6385/"));
    golden("deploy.ipxe", &ipxe::deploy_script(&deploy()).unwrap());
    let mut inspect = deploy();
    inspect.params.inspection_callback_url =
        Some("http://10.0.2.2:6385/v1/continue_inspection".into());
    inspect.params.advertise = None;
    golden("inspect.ipxe", &ipxe::deploy_script(&inspect).unwrap());
    golden("local.ipxe", &ipxe::local_boot_script(UUID));
    golden(
        "not-managed.ipxe",
        &ipxe::not_managed_script(&"52:54:00:12:34:56".parse().unwrap()),
    );
}

#[test]
fn kernel_params_follow_the_contract() {
    let p = deploy().params.render();
    assert_eq!(
        p,
        "ipa-api-url=http://10.0.2.2:6385 ipa-advertise-host=127.0.0.1 \
         ipa-advertise-port=19999 BOOTIF=01-${mac:hexhyp} console=ttyS0"
    );
}

#[test]
fn boot_files_lifecycle_and_confinement() {
    let dir = tempfile::tempdir().unwrap();
    let files = BootFiles::new(dir.path().join("boot"), "http://10.0.2.2:6385")
        .unwrap()
        .with_local_dirs(&[dir.path().to_path_buf()])
        .unwrap();
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&kernel, b"kernel bytes").unwrap();
    std::fs::write(dir.path().join("secret"), b"no").unwrap();
    let mac: Mac = "52:54:00:12:34:56".parse().unwrap();

    // Unknown MAC: the generated "not managed" script, never a 404 loop.
    assert!(
        matches!(files.serve("52-54-00-12-34-56.ipxe"), Served::Script(s) if s.contains("not managed"))
    );
    assert!(
        matches!(files.serve("boot.ipxe"), Served::Script(s) if s.contains("/boot/${net${netid}/mac:hexhyp}.ipxe"))
    );

    // Staging: a local file is linked under the node and served; an http URL is used as is.
    let url = files
        .deploy_url(
            UUID,
            "deploy_kernel",
            &format!("file://{}", kernel.display()),
        )
        .unwrap();
    assert_eq!(
        url,
        format!("http://10.0.2.2:6385/boot/{UUID}/deploy_kernel")
    );
    match files.serve(&format!("/{UUID}/deploy_kernel")) {
        Served::File(p) => assert_eq!(std::fs::read(p).unwrap(), b"kernel bytes"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        files
            .deploy_url(UUID, "deploy_ramdisk", "https://images/ramdisk.gz")
            .unwrap(),
        "https://images/ramdisk.gz"
    );
    files.write_node_script(&[mac], "#!ipxe\nexit\n").unwrap();
    match files.serve("52-54-00-12-34-56.ipxe") {
        Served::File(p) => assert_eq!(std::fs::read_to_string(p).unwrap(), "#!ipxe\nexit\n"),
        other => panic!("{other:?}"),
    }
    // Upper-case and colon spellings reach the same file.
    assert!(matches!(
        files.serve("52:54:00:12:34:56.ipxe"),
        Served::File(_)
    ));

    // Traversal and junk.
    for bad in [
        "../secret",
        "..%2fsecret/..",
        "x/../../secret",
        "a\\..\\secret",
    ] {
        assert!(matches!(files.serve(bad), Served::Refused(_)), "{bad}");
    }
    for missing in [
        "secret",
        "nope.ipxe",
        "zz-54-00-12-34-56.ipxe",
        &format!("{UUID}/other"),
    ] {
        assert_eq!(files.serve(missing), Served::NotFound, "{missing}");
    }
    // Bad sources and node ids are clear errors.
    for (node, name, src) in [
        ("../x", "deploy_kernel", "/etc/hostname"),
        (UUID, "deploy_kernel", "relative/path"),
        (UUID, "deploy_kernel", "/nonexistent/vmlinuz"),
        (UUID, "evil", "/etc/hostname"),
    ] {
        let e = files.deploy_url(node, name, src).unwrap_err();
        assert!(!e.to_string().is_empty());
    }
    // A symlink planted inside the node directory cannot leak files outside the root.
    let node_dir = files.root().join(UUID);
    std::fs::remove_file(node_dir.join("deploy_kernel")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), node_dir.join("deploy_kernel")).unwrap();
    assert!(matches!(
        files.serve(&format!("{UUID}/deploy_kernel")),
        Served::Refused(_)
    ));

    // Cleanup removes scripts and staged files.
    files.remove_node_scripts(&[mac]);
    files.remove_node_files(UUID);
    assert!(matches!(
        files.serve("52-54-00-12-34-56.ipxe"),
        Served::Script(_)
    ));
    assert_eq!(
        files.serve(&format!("{UUID}/deploy_kernel")),
        Served::NotFound
    );
}
