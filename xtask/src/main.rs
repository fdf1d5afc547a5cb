//! `cargo xtask <command>`: builds, installs test dependencies, runs tests and benchmarks.

mod bench;
mod demo;
mod deps;
mod elf;
mod fuzz;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Ferrite project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what builds, tests, benches and the demo need and is missing: Debian packages
    /// (needs root), the agent's rustup target, the fuzzing toolchain and cargo-fuzz, Python
    /// venvs of the baselines.
    Deps {
        /// Install nothing: list every item, present or missing, and fail if any is missing.
        #[arg(long)]
        check: bool,
    },
    /// Build the static release agent into target/agent/ferrite-agent.
    Agent,
    /// Through a conductor and the `ferrite` CLI: enroll a QEMU server with a simulated BMC,
    /// inspect it, clean it, deploy the test OS with a config drive, boot it, and print the
    /// inventory and phase timings.
    Demo {
        /// Leave the conductor, the image server and the node running at the end (Ctrl-C,
        /// SIGTERM or SIGHUP stops them all).
        #[arg(long)]
        keep: bool,
    },
    /// Build the deploy ramdisk: target/ramdisk/ferrite.{kernel,initramfs,manifest.json}.
    Ramdisk {
        /// `server` (common server NICs and disk controllers, cold-plugged by modalias) or
        /// `virtual` (QEMU/KVM drivers only); lists in ramdisk-build/modules/.
        #[arg(long, default_value = "server")]
        profile: ferrite_ramdisk_build::Profile,
    },
    /// Build the test OS image: target/test-image/ferrite-test-os.{raw,qcow2} + SHA256SUMS.
    TestImage,
    /// fmt check, clippy -D warnings, the static agent, every test, and each fuzz target
    /// for 10 s.
    Test {
        /// Skip the QEMU VM tests (for a quick local loop; CI never passes this).
        #[arg(long)]
        quick: bool,
    },
    /// Run every cargo-fuzz target (nightly) for a while each; a crash fails the run.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only the targets whose name contains this.
        #[arg(long)]
        target: Option<String>,
    },
    /// Run a benchmark; prints a table and writes target/bench/<name>.json.
    Bench {
        /// Which benchmark: ipmi, agent, e2e, iscsi, image-write, conductor, redfish or
        /// fleet.
        #[arg(required_unless_present = "smoke")]
        name: Option<String>,
        /// Run every benchmark (or only NAME) with tiny sizes and check the records each
        /// writes (target/bench/smoke/<name>.json); `cargo xtask test` runs this.
        #[arg(long)]
        smoke: bool,
        /// fleet: simulated nodes to enroll [default: 10000].
        #[arg(long)]
        nodes: Option<usize>,
        /// fleet: nodes deployed at once [default: 1000].
        #[arg(long)]
        wave: Option<usize>,
        /// fleet: nodes of the OpenStack Ironic baseline's wave (and of the Ferrite wave of
        /// the same size it is compared with) [default: 100].
        #[arg(long)]
        ironic_wave: Option<usize>,
    },
}

fn main() -> ExitCode {
    util::started();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Deps { check: false } => deps::install(),
        Command::Deps { check: true } => deps::check(),
        Command::Agent => build_agent().map(|_| ()),
        Command::Demo { keep } => demo::run(keep),
        Command::Ramdisk { profile } => build_ramdisk(profile).map(|_| ()),
        Command::TestImage => build_test_image().map(|_| ()),
        Command::Test { quick } => test(quick),
        Command::Bench {
            smoke,
            name,
            nodes,
            wave,
            ironic_wave,
        } => {
            bench::fleet::set_sizes(nodes, wave, ironic_wave);
            if smoke {
                bench::smoke(false, name.as_deref())
            } else {
                bench::run(name.as_deref().unwrap_or_default())
            }
        }
        Command::Fuzz { seconds, target } => fuzz::run(seconds, target.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The agent must fit comfortably in a ramdisk.
const AGENT_SIZE_LIMIT: u64 = 8 * 1024 * 1024;

/// Builds the static agent and returns its path.
pub fn build_agent() -> anyhow::Result<std::path::PathBuf> {
    let root = util::project_root();
    util::cargo(&[
        "build",
        "--release",
        "--locked",
        "--target",
        MUSL_TARGET,
        "--package",
        "ferrite-agent",
        "--bin",
        "ferrite-agent",
    ])?;
    let built = root
        .join("target")
        .join(MUSL_TARGET)
        .join("release/ferrite-agent");
    let out_dir = root.join("target/agent");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join("ferrite-agent");
    std::fs::copy(&built, &out)?;
    let bytes = std::fs::read(&out)?;
    let linkage = elf::linkage(&bytes)?;
    if linkage != elf::Linkage::Static {
        anyhow::bail!(
            "{} is {linkage:?}, not statically linked: check that no dependency links a \
             shared C library",
            out.display()
        );
    }
    let size = bytes.len() as u64;
    println!(
        "agent: {} ({:.2} MiB, statically linked)",
        out.display(),
        size as f64 / 1048576.0
    );
    if size > AGENT_SIZE_LIMIT {
        anyhow::bail!("the agent is {size} bytes, over the {AGENT_SIZE_LIMIT}-byte budget");
    }
    Ok(out)
}

/// Builds the agent, then the deploy ramdisk of `profile`; returns its manifest.
pub fn build_ramdisk(
    profile: ferrite_ramdisk_build::Profile,
) -> anyhow::Result<ferrite_ramdisk_build::Manifest> {
    let agent = build_agent()?;
    let target = util::project_root().join("target");
    let m = ferrite_ramdisk_build::RamdiskBuilder::new(agent, target.join("ramdisk"))
        .cache_dir(target.join("ramdisk-cache"))
        .profile(profile)
        .build()?;
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "ramdisk: target/ramdisk/{} {:.2} MiB (kernel {} {})",
        m.kernel.file,
        mib(m.kernel.bytes),
        m.kernel_package.name,
        m.kernel_package.version
    );
    println!(
        "ramdisk: target/ramdisk/{} {:.2} MiB gzip ({:.2} MiB unpacked, budget {:.0} MiB), \
         {} entries, {} modules, sha256 {}",
        m.initramfs.file,
        mib(m.initramfs.bytes),
        mib(m.initramfs_uncompressed_bytes),
        mib(m.initramfs_budget_bytes),
        m.entries,
        m.modules.len(),
        m.initramfs.sha256
    );
    println!(
        "ramdisk: profile {}; by category (gzip'd alone):",
        m.profile
    );
    for c in &m.sizes {
        println!(
            "  {:<8} {:>4} files {:>7.2} MiB ({:.2} MiB gzip)",
            c.category,
            c.files,
            mib(c.bytes),
            mib(c.gzip_bytes)
        );
    }
    if !m.firmware_missing.is_empty() {
        let missing: Vec<String> = m
            .firmware_missing
            .iter()
            .map(|f| format!("{} ({})", f.file, f.module))
            .collect();
        println!(
            "ramdisk: firmware no pinned package has: {}",
            missing.join(", ")
        );
    }
    Ok(m)
}

/// Builds the test OS images (raw + qcow2, and the partition image) under target/test-image.
pub fn build_test_image() -> anyhow::Result<ferrite_ramdisk_build::TestImage> {
    let target = util::project_root().join("target");
    let image = ferrite_ramdisk_build::TestImageBuilder::new(target.join("test-image"))
        .cache_dir(target.join("ramdisk-cache"))
        .build()?;
    println!(
        "test-image: {} sha256 {}",
        image.raw.display(),
        image.raw_sha256
    );
    println!(
        "test-image: {} sha256 {}",
        image.qcow2.display(),
        image.qcow2_sha256
    );
    println!(
        "test-image: {} sha256 {}",
        image.partition.display(),
        image.partition_sha256
    );
    Ok(image)
}

/// How long `cargo xtask test` runs each fuzz target.
const FUZZ_SMOKE_SECONDS: u64 = 5;

fn test(quick: bool) -> anyhow::Result<()> {
    deps::install()?;
    deps::check()?;
    util::step("cargo fmt --check");
    util::cargo(&["fmt", "--all", "--", "--check"])?;
    util::step("cargo clippy");
    util::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    util::step("static agent");
    build_agent()?;
    util::step("cargo test (build)");
    util::cargo(&["test", "--workspace", "--locked", "--no-run"])?;
    // The fuzz targets' nightly build (~7 min on a fresh machine) runs beside the tests at
    // the lowest CPU priority: it takes the CPU the tests leave idle (they wait on VMs,
    // Ironic and timers much of the time) and next to none of what a QEMU guest uses.
    let fuzz_build = (!quick).then(fuzz::build_in_background);
    util::step("cargo test");
    // Every VM test records a skip in this file; without --quick none may skip.
    let skip_log = util::project_root().join("target/vm-test-skips.log");
    let _ = std::fs::remove_file(&skip_log);
    let mut cmd = util::cargo_command(&["test", "--workspace", "--locked"]);
    cmd.env(ferrite_qemu_harness::skip::SKIP_LOG_VAR, &skip_log);
    // The dashboard's browser test (conductor/tests/ui.rs) may not skip here: `deps`
    // installed chromium and chromium-driver.
    cmd.env("FERRITE_REQUIRE_BROWSER", "1");
    // Nor the inventory parity test (tests/tests/inventory_ipa_parity.rs): `deps` made
    // target/ipa-venv with ironic-python-agent.
    cmd.env("FERRITE_REQUIRE_IPA", "1");
    if quick {
        cmd.env(ferrite_qemu_harness::skip::SKIP_VAR, "1");
    } else {
        cmd.env_remove(ferrite_qemu_harness::skip::SKIP_VAR);
    }
    util::run(&mut cmd)?;
    let skipped = std::fs::read_to_string(&skip_log).unwrap_or_default();
    if quick {
        println!(
            "xtask: --quick: {} VM tests skipped",
            skipped.lines().count()
        );
    } else if !skipped.trim().is_empty() {
        anyhow::bail!("VM tests were skipped in a full run (CI must run them all):\n{skipped}");
    }
    util::step("cargo xtask bench --smoke");
    bench::smoke(quick, None)?;
    if let Some(build) = fuzz_build {
        util::step("fuzz targets: waiting for their build");
        build
            .join()
            .map_err(|_| anyhow::anyhow!("the fuzz build thread panicked"))??;
        // Briefly, so no fuzz target rots; `cargo xtask fuzz` is the long run.
        util::step(&format!("fuzz targets, {FUZZ_SMOKE_SECONDS} s each"));
        fuzz::run(FUZZ_SMOKE_SECONDS, None)?;
    }
    let t = util::started().elapsed().as_secs();
    println!("xtask: all tests passed in {}:{:02}", t / 60, t % 60);
    Ok(())
}
