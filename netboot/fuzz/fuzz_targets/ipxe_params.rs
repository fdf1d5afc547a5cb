//! Arbitrary URLs and kernel parameters into the deploy iPXE script: whatever is accepted
//! may not add a line or an argument to the script (no command injection), and nothing
//! panics.
#![no_main]

use ferrite_netboot::ipxe::{self, DeployBoot, KernelParams};
use libfuzzer_sys::fuzz_target;

fn script(kernel: &str, ramdisk: &str, params: Vec<String>) -> Result<String, ipxe::ScriptError> {
    ipxe::deploy_script(&DeployBoot {
        node_uuid: "1be26c0b-03f2-4d2e-ae87-c02d7f33c123".into(),
        kernel_url: kernel.into(),
        ramdisk_url: ramdisk.into(),
        params: KernelParams {
            api_url: "http://10.0.2.2:6385".into(),
            inspection_callback_url: None,
            advertise: None,
            extra: params,
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{0}');
    let kernel = parts.next().unwrap_or("");
    let ramdisk = parts.next().unwrap_or("http://h/r");
    let params: Vec<String> = parts.map(str::to_string).collect();
    let n_params = params.len();
    let reference = script("http://h/k", "http://h/r", vec!["p".into(); n_params])
        .expect("plain values are accepted");
    let Ok(s) = script(kernel, ramdisk, params) else {
        return;
    };
    assert_eq!(
        s.lines().count(),
        reference.lines().count(),
        "a line was added:\n{s}"
    );
    let words =
        |s: &str| -> Vec<usize> { s.lines().map(|l| l.split_whitespace().count()).collect() };
    assert_eq!(words(&s), words(&reference), "an argument was added:\n{s}");
    let _ = ipxe::check_word("x", kernel);
});
