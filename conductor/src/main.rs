//! `ferrite`: the conductor server and its client CLI; everything lives in the library.

fn main() -> std::process::ExitCode {
    ferrite_conductor::cli::main()
}
