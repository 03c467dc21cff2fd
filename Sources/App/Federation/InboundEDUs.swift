import Matrix

extension MyelinApp {
    /// The EDUs of an inbound `/send` transaction (typing, receipts, presence, to-device,
    /// device lists). Helper "dest" owns this function; until its branch lands the EDUs are
    /// ignored (server-server API: EDUs need no acknowledgement).
    func receiveEDUs(_ edus: [JSON], origin: ServerName) async {}
}
