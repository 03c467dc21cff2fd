import ArgumentParser

/// Placeholder.
struct Mixed: AsyncParsableCommand {
    @OptionGroup var common: CommonOptions
    func run() async throws { throw BenchError("not implemented yet") }
}
