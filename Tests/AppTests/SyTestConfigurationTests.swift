import Matrix
import Testing
@testable import App

/// The configuration keys the SyTest launcher (tests/sytest/launcher.py) writes: each must
/// load, so that a renamed key fails here rather than as a server that never starts.
@Suite("SyTest configuration")
struct SyTestConfigurationTests {
    @Test func defaultRoomVersionIsReadAndChecked() throws {
        #expect(Configuration().defaultRoomVersion == RoomVersion.recommendedDefault.id)
        let configuration = try ConfigurationLoader.load(yaml: "default_room_version: \"10\"")
        #expect(configuration.defaultRoomVersion == "10")
        do {
            _ = try ConfigurationLoader.load(yaml: "default_room_version: \"99\"")
            Issue.record("room version 99 was accepted")
        } catch {
            #expect("\(error)" == "default_room_version: '99' is not a supported room version")
        }
    }

    @Test func launcherConfigurationLoads() throws {
        let configuration = try ConfigurationLoader.load(yaml: """
            server_name: "localhost:8800"
            default_room_version: "10"
            registration:
              enabled: true
              allow_guests: true
              shared_secret: reg_secret
            rate_limits:
              enabled: false
            federation:
              trusted_key_servers: []
              extra_ca_files: [/tmp/ca.crt]
              ip_range_whitelist: [127.0.0.0/8, "::1/128"]
            """)
        #expect(configuration.serverName == "localhost:8800")
        #expect(configuration.registration.allowGuests)
        #expect(configuration.registration.sharedSecret == "reg_secret")
        #expect(!configuration.rateLimits.enabled)
        #expect(configuration.federation.trustedKeyServers.isEmpty)
        #expect(configuration.federation.extraCAFiles == ["/tmp/ca.crt"])
        #expect(configuration.federation.ipRangeWhitelist == ["127.0.0.0/8", "::1/128"])
    }
}
