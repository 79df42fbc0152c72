<#
.SYNOPSIS
  Removes the TLS security gateway service and its firewall rules. The data folder (users,
  HMAC key, local CA devices trust, logs) is kept unless -RemoveData is given.
#>
[CmdletBinding()]
param(
    [string]$InstallDir = "C:\Program Files\TlsGateway",
    [string]$DataDir = "C:\ProgramData\TlsGateway",
    [switch]$RemoveData
)
$ErrorActionPreference = "Stop"
$ServiceId = "tls-gateway"
$Wrapper = Join-Path $InstallDir "$ServiceId.exe"

if (Test-Path $Wrapper) {
    & $Wrapper stop
    & $Wrapper uninstall
}
netsh advfirewall firewall delete rule name="TLS gateway (bases)"
netsh advfirewall firewall delete rule name="Legacy server (direct access blocked)"
Remove-Item -Recurse -Force $InstallDir -ErrorAction SilentlyContinue
if ($RemoveData) {
    Remove-Item -Recurse -Force $DataDir
    Write-Host "Removed $DataDir. Devices enrolled with its local CA must be enrolled again."
} else {
    Write-Host "Kept $DataDir (state, logs, configuration)."
}
