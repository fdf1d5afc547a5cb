//! `ferrite-qemu-harness`: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    ferrite_qemu_harness::cli::main()
}
