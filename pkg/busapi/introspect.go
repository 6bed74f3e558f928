package busapi

import "github.com/godbus/dbus/v5"

// introspectable answers org.freedesktop.DBus.Introspectable.Introspect.
type introspectable string

// Introspect returns the object's description.
func (i introspectable) Introspect() (string, *dbus.Error) { return string(i), nil }

// introspection declares every method of docs/enrollment.md, the enrollment ones included.
const introspection = `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node name="/io/github/pamtotp/Sync1">
  <interface name="io.github.pamtotp.Sync1">
    <method name="Status">
      <arg name="status" type="a{sv}" direction="out"/>
    </method>
    <method name="ListTokens">
      <arg name="tokens" type="a(sssxb)" direction="out"/>
    </method>
    <method name="BeginEnrollment">
      <arg name="name" type="s" direction="in"/>
      <arg name="proof" type="s" direction="in"/>
      <arg name="id" type="s" direction="out"/>
      <arg name="uri" type="s" direction="out"/>
      <arg name="expires" type="x" direction="out"/>
    </method>
    <method name="FinishEnrollment">
      <arg name="id" type="s" direction="in"/>
      <arg name="code" type="s" direction="in"/>
      <arg name="status" type="s" direction="out"/>
      <arg name="skew_s" type="i" direction="out"/>
      <arg name="backup_codes" type="as" direction="out"/>
    </method>
    <method name="RenameToken">
      <arg name="id" type="s" direction="in"/>
      <arg name="name" type="s" direction="in"/>
    </method>
    <method name="RemoveToken">
      <arg name="id" type="s" direction="in"/>
      <arg name="proof" type="s" direction="in"/>
    </method>
    <method name="RegenerateBackupCodes">
      <arg name="proof" type="s" direction="in"/>
      <arg name="codes" type="as" direction="out"/>
    </method>
    <method name="RequestBootstrapCode">
      <arg name="expires" type="x" direction="out"/>
    </method>
    <method name="BeginEnrollmentFor">
      <arg name="user" type="s" direction="in"/>
      <arg name="name" type="s" direction="in"/>
      <arg name="id" type="s" direction="out"/>
      <arg name="uri" type="s" direction="out"/>
      <arg name="expires" type="x" direction="out"/>
    </method>
    <method name="FinishEnrollmentFor">
      <arg name="user" type="s" direction="in"/>
      <arg name="id" type="s" direction="in"/>
      <arg name="code" type="s" direction="in"/>
      <arg name="status" type="s" direction="out"/>
      <arg name="skew_s" type="i" direction="out"/>
      <arg name="backup_codes" type="as" direction="out"/>
    </method>
    <method name="SyncNow">
      <arg name="revision" type="x" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect">
      <arg name="xml" type="s" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId">
      <arg name="machine_uuid" type="s" direction="out"/>
    </method>
  </interface>
</node>`
