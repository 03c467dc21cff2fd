import ArgumentParser

/// Placeholder.
struct Initial: AsyncParsableCommand {
    @OptionGroup var common: CommonOptions
    func run() async throws { throw BenchError("not implemented yet") }
}
