import Testing
@testable import Transport

@Test func transportModuleLoads() { #expect(Bool(true)) }
