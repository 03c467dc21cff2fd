import Transport
/// The rooms module of the client-server API: creation, membership, events, history,
/// ephemeral events and sync.
enum RoomEndpoints {
    static func register(_ routes: inout RouteBuilder) {
        RoomCreation.register(&routes)
        Membership.register(&routes)
        RoomEvents.register(&routes)
        Messages.register(&routes)
        Ephemeral.register(&routes)
        Sync.register(&routes)
        SendToDevice.register(&routes)
        LegacySync.register(&routes)
        Directory.register(&routes)
        RoomUpgrade.register(&routes)
        Relations.register(&routes)
        Search.register(&routes)
        SpaceHierarchy.register(&routes)
    }
}
