import Matrix
import Testing
@testable import Persistence

/// The remote device-list cache on both backends: a resync replaces the whole list, an update
/// moves the stream id and replaces or deletes one device (only for a cached user),
/// cross-signing keys are kept when not given, and a forgotten user is gone.
@Suite struct RemoteDeviceStoreTests {
    @Test(arguments: Backend.enabled)
    func replaceApplyCrossSigningForget(_ backend: Backend) async throws {
        try await withDatabase(backend) { (database) async throws in
            let store = database.remoteDevices
            let bob = "@bob:remote.test:8448"
            #expect(try await store.streamID(of: bob) == nil)
            let ghost = RemoteDeviceStore.Device(deviceID: "OLD", displayName: nil, keys: nil)
            let phone = RemoteDeviceStore.Device(deviceID: "PHONE", displayName: "Phone", keys: Array("{\"k\":1}".utf8))
            let refused = try await database.write { db -> [Bool] in
                // Not cached: an update is refused, nothing is written.
                let refused = [try RemoteDeviceStore.apply(db, user: bob, device: phone, deleted: false, streamID: 3),
                               try RemoteDeviceStore.setCrossSigning(db, user: bob, master: [1], selfSigning: nil)]
                try RemoteDeviceStore.replace(db, user: bob, list: .init(streamID: 7, devices: [ghost], masterKey: [9], selfSigningKey: nil))
                try RemoteDeviceStore.replace(db, user: bob, list: .init(streamID: 8, devices: [phone], masterKey: nil, selfSigningKey: [5]))
                return refused
            }
            #expect(refused == [false, false])
            var list = try #require(try await store.lists(of: [bob, "@nobody:remote.test:8448"])[bob])
            #expect(list == .init(streamID: 8, devices: [phone], masterKey: nil, selfSigningKey: [5]))

            let laptop = RemoteDeviceStore.Device(deviceID: "LAPTOP", displayName: nil, keys: Array("{\"k\":2}".utf8))
            let applied = try await database.write { db -> [Bool] in
                [try RemoteDeviceStore.apply(db, user: bob, device: laptop, deleted: false, streamID: 9),
                 try RemoteDeviceStore.apply(db, user: bob, device: phone, deleted: true, streamID: 10),
                 try RemoteDeviceStore.setCrossSigning(db, user: bob, master: [1], selfSigning: nil)]
            }
            #expect(applied == [true, true, true])
            list = try #require(try await store.lists(of: [bob])[bob])
            #expect(list == .init(streamID: 10, devices: [laptop], masterKey: [1], selfSigningKey: [5]))
            #expect(try await store.cachedUsers() == [bob])

            try await store.forget(bob)
            #expect(try await store.lists(of: [bob]).isEmpty)
            #expect(try await store.streamID(of: bob) == nil)
        }
    }
}
