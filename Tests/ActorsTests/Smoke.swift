import Testing
@testable import Actors

@Test func actorsModuleLoads() { #expect(Bool(true)) }
