import ArgumentParser

/// Placeholder.
struct SendThroughput: AsyncParsableCommand {
    @OptionGroup var common: CommonOptions
    func run() async throws { throw BenchError("not implemented yet") }
}
