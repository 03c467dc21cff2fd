import Testing
import Matrix
#if canImport(Glibc)
import Glibc
#endif
@testable import App

@Test func signingKeyFileIsCreatedThenReloaded() throws {
    let dir = "/tmp/myelin-key-test-\(Base64.encodeURLSafe(Sodium.randomBytes(6)))"
    let path = dir + "/data/signing.key" // parent directories are created
    let first = try SigningKeyFile.loadOrGenerate(path: path)
    let second = try SigningKeyFile.loadOrGenerate(path: path)
    #expect(first.seed == second.seed)
    #expect(first.keyID == second.keyID)
    #expect(first.version.hasPrefix("a_"))
    #expect(SigningKeyFile.contents(of: path) == first.fileContents)
    _ = unlink(path)
    _ = rmdir(dir + "/data")
    _ = rmdir(dir)
}
