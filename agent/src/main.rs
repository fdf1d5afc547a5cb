//! `ferrite-agent`: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    ferrite_agent::cli::main()
}
