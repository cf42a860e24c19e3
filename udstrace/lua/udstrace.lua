-- udstrace.lua: the metadata udstrace writes in each packet's comment, as Wireshark fields
-- (udstrace.pid, udstrace.comm, udstrace.path, ...) for display filters and columns.
-- Installed by `udstrace extcap install`. Without it, everything is still in the comment.

local proto = Proto("udstrace", "udstrace Unix socket metadata")

local number_fields = {
    pid = ProtoField.uint32("udstrace.pid", "Sender process ID"),
    tid = ProtoField.uint32("udstrace.tid", "Sender thread ID"),
    uid = ProtoField.uint32("udstrace.uid", "Sender user ID"),
    gid = ProtoField.uint32("udstrace.gid", "Sender group ID"),
    ino = ProtoField.uint64("udstrace.ino", "Socket inode"),
    peer_ino = ProtoField.uint64("udstrace.peer_ino", "Peer socket inode"),
    msg_len = ProtoField.uint64("udstrace.msg_len", "Message length"),
    seg_offset = ProtoField.uint64("udstrace.seg_offset", "Offset in message"),
    cred_pid = ProtoField.int32("udstrace.cred_pid", "Credentials: process ID (SCM_CREDENTIALS)"),
    cred_uid = ProtoField.uint32("udstrace.cred_uid", "Credentials: user ID"),
    cred_gid = ProtoField.uint32("udstrace.cred_gid", "Credentials: group ID"),
}
local string_fields = {
    comm = ProtoField.string("udstrace.comm", "Sender command"),
    type = ProtoField.string("udstrace.type", "Socket type"),
    path = ProtoField.string("udstrace.path", "Socket name"),
    peer_path = ProtoField.string("udstrace.peer_path", "Peer socket name"),
    syscall = ProtoField.string("udstrace.syscall", "System call"),
    payload = ProtoField.string("udstrace.payload", "Payload not captured"),
    peer_pid = ProtoField.string("udstrace.peer_pid", "Peer process IDs"),
    peer_comm = ProtoField.string("udstrace.peer_comm", "Peer commands"),
    fds = ProtoField.string("udstrace.fds", "Passed file descriptors (SCM_RIGHTS)"),
    cmsg = ProtoField.string("udstrace.cmsg", "Other control messages"),
    control = ProtoField.string("udstrace.control", "Control data cut"),
    dir = ProtoField.string("udstrace.dir", "Direction (recv: a receive)"),
}
local order = { "pid", "tid", "comm", "uid", "gid", "type", "ino", "peer_ino", "path", "peer_path",
                "peer_pid", "peer_comm", "syscall", "msg_len", "dir", "seg_offset",
                "payload", "cred_pid", "cred_uid", "cred_gid", "fds", "cmsg", "control" }

local all = {}
for _, f in pairs(number_fields) do table.insert(all, f) end
for _, f in pairs(string_fields) do table.insert(all, f) end
proto.fields = all

local comment = Field.new("frame.comment")

-- Values escape bytes as \xNN (see docs/FORMAT.md).
local function unescape(v)
    return (v:gsub("\\x(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function proto.dissector(tvb, pinfo, tree)
    local c = comment()
    if c == nil then return end
    local text = tostring(c.value)
    if not text:find("type=", 1, true) or not text:find("ino=", 1, true) then return end
    local values = {}
    for k, v in text:gmatch("(%S+)=(%S*)") do values[k] = v end
    local comm = unescape(values.comm or "")
    local sub = tree:add(proto, string.format("udstrace: %s[%s] %s", comm, values.pid or "?",
                                                values.type or "?"))
    for _, k in ipairs(order) do
        local v = values[k]
        if v ~= nil then
            if number_fields[k] then
                local n = tonumber(v)
                if n ~= nil then
                    if k == "ino" or k == "peer_ino" or k == "msg_len" or k == "seg_offset" then
                        sub:add(number_fields[k], UInt64.new(n))
                    else
                        sub:add(number_fields[k], n)
                    end
                end
            elseif string_fields[k] then
                sub:add(string_fields[k], unescape(v))
            end
        end
    end
end

register_postdissector(proto)
