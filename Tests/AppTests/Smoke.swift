import Testing
@testable import App

@Test func appModuleLoads() { #expect(Bool(true)) }
