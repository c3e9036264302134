fn main() {
    std::process::exit(stackctl::run());
}
