import Testing
@testable import Matrix

@Test func matrixModuleLoads() { #expect(Bool(true)) }
