import Testing
@testable import Persistence

@Test func persistenceModuleLoads() { #expect(Bool(true)) }
